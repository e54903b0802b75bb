//! Connection strings as they may be shown: in errors, logs and health
//! messages, never with a password or a token.

/// `url` without its secrets: the user information of every
/// comma-separated URL (`postgres://u:pw@db`, `nats://TOKEN@host`) becomes
/// `***@`, and a `password=` setting (libpq's key=value form or a query
/// parameter) keeps its key only.
pub fn redact_url(url: &str) -> String {
    let parts: Vec<String> = url
        .split(',')
        .map(|part| match part.find("://") {
            Some(scheme) => {
                let rest = &part[scheme + 3..];
                let end = rest.find(['/', '?']).unwrap_or(rest.len());
                match rest[..end].rfind('@') {
                    Some(at) => format!("{}***@{}", &part[..scheme + 3], &rest[at + 1..]),
                    None => part.to_string(),
                }
            }
            None => part.to_string(),
        })
        .collect();
    let joined = parts.join(",");
    // password=... in key=value strings and query strings.
    let mut out = String::with_capacity(joined.len());
    let mut rest = joined.as_str();
    while let Some(i) = rest.find("password=") {
        out.push_str(&rest[..i + "password=".len()]);
        out.push_str("***");
        let after = &rest[i + "password=".len()..];
        let end = after.find([' ', '&']).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_shown() {
        for (url, shown) in [
            ("postgres://u:s3cret@db/vmdb", "postgres://***@db/vmdb"),
            (
                "postgres://u:p@ss@db:5432/vmdb?sslmode=disable",
                "postgres://***@db:5432/vmdb?sslmode=disable",
            ),
            (
                "host=db user=u password=s3cret dbname=vmdb",
                "host=db user=u password=*** dbname=vmdb",
            ),
            (
                "postgres://db/vmdb?password=s3cret&x=1",
                "postgres://db/vmdb?password=***&x=1",
            ),
            (
                "nats://TOKEN@n1:4222,nats://u:p@n2:4222",
                "nats://***@n1:4222,nats://***@n2:4222",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}

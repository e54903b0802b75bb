//! Unit tests: manageiq-password's own vectors (its spec's public test key
//! `spec/support/v2_key`), the key file format, errors and masking.

use super::*;

/// manageiq-password's public *test* key (spec/support/v2_key), with the
/// `:created:` line ManageIQ writes.
const SPEC_KEY: &str = "---\n:created: 2014-02-28 09:59:47 -0500\n:algorithm: aes-256-cbc\n:key: 5ysYUd3Qrjj7DDplmEJHmnrFBEPS887JwOQv0jFYq2g=\n";

fn spec_key() -> V2Key {
    V2Key::from_yaml(SPEC_KEY, Path::new("spec/v2_key")).unwrap()
}

/// (clear, v2) pairs of manageiq-password's `MIQ_PASSWORD_CASES`.
const CASES: [(&str, &str); 10] = [
    ("test", "v2:{DUb5th63TM+zIB6RhnTtVg==}"),
    ("password", "v2:{gURYNPfZP3cu4+bw9pznMQ==}"),
    ("ca$hcOw", "v2:{Dq/TWvwTfQJDverzajStpA==}"),
    ("Tw45!&zQ", "v2:{27X41c6xqCCdVcw4LlQ1Qg==}"),
    (
        "`~!@#$%^&*()_+-=[]{}\\|;:\"'<>,./?",
        "v2:{zad43i0dQB+8z45ZYMVmpFcagbt40T0aFddhHlj6YtPgoOJ5N3uBYAp8WwuZQkar}",
    ),
    ("abc\t\n\u{b}zabc", "v2:{8iZNC6jMX5jtqSXejeLWBA==}"),
    (
        "äèíôúñæþß",
        "v2:{hPJ7QZBjjq9W2UydkaEvjnqM839QQ9FxJNOZT0ugOVk=}",
    ),
    ("こにちわ", "v2:{efZNQ1asaxeZtemcvhxuMQ==}"),
    ("密码", "v2:{tXN4DnLCrre7HVB+2zEbMg==}"),
    ("şŞ", "v2:{IIdPQA3FbwJv/JmGapatwg==}"),
];

#[test]
fn manageiq_vectors_decrypt_and_encrypt_byte_for_byte() {
    let key = spec_key();
    for (clear, enc) in CASES {
        assert_eq!(key.decrypt(enc).unwrap(), clear, "{enc}");
        assert_eq!(key.encrypt(clear), enc, "{clear:?}");
    }
}

#[test]
fn blanks_newlines_and_erb_as_manageiq() {
    let key = spec_key();
    assert_eq!(key.decrypt("").unwrap(), "");
    assert_eq!(key.decrypt("v2:{}").unwrap(), "");
    assert_eq!(key.encrypt(""), "v2:{}");
    // "should decrypt passwords with newlines"
    assert_eq!(
        key.decrypt("v2:{zad43i0dQB+8z45ZYMVmpFcagbt40T0aFddhHlj6YtPgoOJ5N3uBYAp8WwuZ\nQkar}")
            .unwrap(),
        CASES[4].0
    );
    for wrapper in ["MiqPassword", "DB_PASSWORD", "ManageIQ::Password"] {
        let erb = format!("<%= {wrapper}.decrypt(\"v2:{{DUb5th63TM+zIB6RhnTtVg==}}\") %>");
        assert_eq!(key.decrypt(&erb).unwrap(), "test");
        assert!(is_encrypted(&erb));
    }
    assert_eq!(key.try_decrypt("plain").unwrap(), "plain");
    assert_eq!(key.try_decrypt(CASES[0].1).unwrap(), "test");
}

#[test]
fn bad_values_are_clear_errors() {
    let key = spec_key();
    assert_eq!(key.decrypt("secret"), Err(PasswordError::Plaintext));
    assert_eq!(
        key.decrypt("v1:{KSOqhNiOWJbR0lz7v6PTJg==}"),
        Err(PasswordError::V1)
    );
    // manageiq-password: "should fail on recrypt bad password"
    let e = key.decrypt("v2:{55555}").unwrap_err();
    assert!(matches!(e, PasswordError::CannotDecrypt(_)), "{e}");
    let e = key.decrypt("v2:{not*base64}").unwrap_err();
    assert!(e.to_string().contains("not base64"), "{e}");
    // A value made with another key fails on its padding (or on UTF-8).
    let other = V2Key::from_bytes([7; 32], None, "other");
    let e = other.decrypt(CASES[1].1).unwrap_err();
    assert!(
        e.to_string().starts_with("cannot decrypt encrypted string"),
        "{e}"
    );
}

#[test]
fn key_files_as_manageiq_writes_them() {
    let key = spec_key();
    assert_eq!(
        key.to_yaml(),
        "---\n:algorithm: aes-256-cbc\n:key: 5ysYUd3Qrjj7DDplmEJHmnrFBEPS887JwOQv0jFYq2g=\n"
    );
    assert_eq!(
        V2Key::from_yaml(&key.to_yaml(), Path::new("x")).unwrap(),
        V2Key {
            source: "x".into(),
            ..key.clone()
        }
    );
    // An explicit IV is used and written back.
    let with_iv = format!("{SPEC_KEY}:iv: AAECAwQFBgcICQoLDA0ODw==\n");
    let k = V2Key::from_yaml(&with_iv, Path::new("iv")).unwrap();
    assert_eq!(k.iv, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert!(k.to_yaml().ends_with(":iv: AAECAwQFBgcICQoLDA0ODw==\n"));
    assert_ne!(k.encrypt("test"), key.encrypt("test"));
    assert_eq!(k.decrypt(&k.encrypt("test")).unwrap(), "test");
    // Debug never shows the key.
    assert!(!format!("{key:?}").contains("5ysY"));
}

#[test]
fn bad_key_files_name_the_file_and_field() {
    let err = |text: &str| {
        V2Key::from_yaml(text, Path::new("/etc/v2_key"))
            .unwrap_err()
            .to_string()
    };
    assert!(err("---\n:algorithm: aes-128-cbc\n:key: AAAA\n")
        .contains("/etc/v2_key: :algorithm: is [aes-128-cbc]"));
    assert!(err("---\n:algorithm: aes-256-cbc\n").contains(":key: is missing"));
    assert!(err("---\n:key: AAAA\n").contains(":key: is 3 bytes; aes-256-cbc needs 32"));
    assert!(err("---\n:key: '%%%'\n").contains(":key: is not base64"));
    assert!(err("- a list\n").contains("not a ManageIQ key file"));
    let e = V2Key::load(Path::new("/nonexistent/v2_key"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("v2 key file /nonexistent/v2_key: "), "{e}");
}

#[test]
fn generated_keys_round_trip() {
    let a = V2Key::generate("a").unwrap();
    let b = V2Key::generate("b").unwrap();
    assert_ne!(a.key, b.key);
    let back = V2Key::from_yaml(&a.to_yaml(), Path::new("a")).unwrap();
    assert_eq!(back.decrypt(&a.encrypt("s3cret")).unwrap(), "s3cret");
}

#[test]
fn sanitize_masks_as_sanitize_string() {
    // manageiq-password's `.sanitize_string` examples.
    assert_eq!(
        sanitize("some :password: v1:{XAWlcAlViNwB} and another :password: v2:{egr+hObB}"),
        "some :password: ******** and another :password: ********"
    );
    assert_eq!(
        sanitize("some :enocded_password: v1%3A%7BXAWlcAlViNwB%7D and another :enocded_password: v2%3A%7Begr%2BhObB%7D"),
        "some :enocded_password: ******** and another :enocded_password: ********"
    );
    assert!(matches!(sanitize("nothing here"), Cow::Borrowed(_)));
    assert!(matches!(sanitize("v2%3Ano"), Cow::Borrowed(_)));
    assert_eq!(sanitize("v2%3Ano"), "v2%3Ano");
    assert!(may_hold_password(b"x v2:{"));
    assert!(!may_hold_password(b"v2: {} v3:{}"));
    assert_eq!(sanitize("open v2:{abc and more"), "open v2:{abc and more");
    assert_eq!(sanitize("v2:{a}v2:{b}"), "****************");
    assert!(is_encrypted("v2:{abc}"));
    assert!(!is_encrypted("abc"));
    assert!(!is_encrypted(""));
}

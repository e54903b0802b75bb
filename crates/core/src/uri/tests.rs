//! Table-driven tests: reference §10 items 1, 2, 3, 9, 15, 16 and the URI forms
//! the engine passes through [`parse`].

use super::*;

/// The delivery URI of the seed's `USER_RUN_VM` event.
pub(super) const SEED_URI: &str = "/System/Process/Event?EventStream%3A%3Aevent_stream=1000000003170&Host%3A%3Ahost=1000000000001&MiqServer%3A%3Amiq_server=1000000000001&User%3A%3Auser=1&VmOrTemplate%3A%3Avm=1000000000029&event_id=1000000003170&event_stream_id=1000000003170&event_type=USER_RUN_VM&host_id=1000000000001&object_name=Event&vm_id=1000000000029&vmdb_object_type=event_stream";

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err(input: &str) -> UriError {
    match parse(input) {
        Ok(uri) => panic!("{input:?} parsed as {uri:?}"),
        Err(e) => e,
    }
}

// ---- §10 item 1: hash2query / query2hash -------------------------------------

#[test]
fn hash2query_sorts_and_round_trips() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "environment=dev&message=get_container_info&request=UI_PROVISION_INFO",
            &[
                ("request", "UI_PROVISION_INFO"),
                ("message", "get_container_info"),
                ("environment", "dev"),
            ],
        ),
        (
            "message=get_lease_times&request=UI_PROVISION_INFO",
            &[
                ("request", "UI_PROVISION_INFO"),
                ("message", "get_lease_times"),
            ],
        ),
        (
            "test%3A%2F%2Fdev%3Flab%24=OU%3Dserverbuildingtest%2C%20OU%3Ddev2",
            &[("test://dev?lab$", "OU=serverbuildingtest, OU=dev2")],
        ),
        ("B=1&a=2", &[("a", "2"), ("B", "1")]),
        ("", &[]),
    ];
    for (query, hash) in cases {
        let hash = pairs(hash);
        assert_eq!(hash2query(&hash), *query, "hash2query {hash:?}");
        let mut sorted = hash.clone();
        sorted.sort();
        assert_eq!(query2hash(query), sorted, "query2hash {query:?}");
    }
}

#[test]
fn url_encode_table() {
    let cases = [
        ("test://dev?lab$", "test%3A%2F%2Fdev%3Flab%24"),
        ("EventStream::event_stream", "EventStream%3A%3Aevent_stream"),
        ("a b,c/d", "a%20b%2Cc%2Fd"),
        ("keep-_.~AZaz09", "keep-_.~AZaz09"),
        ("+=&#%", "%2B%3D%26%23%25"),
        ("\u{1F}", "%1F"),
        ("é", "%C3%A9"),
        ("", ""),
    ];
    for (plain, encoded) in cases {
        assert_eq!(url_encode(plain), encoded, "{plain:?}");
        assert_eq!(url_decode(encoded), plain, "{encoded:?}");
    }
}

#[test]
fn url_decode_table() {
    let cases = [
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("%3a%3A", "::"),
        ("100%", "100%"),
        ("%zz%4", "%zz%4"),
        ("%%41", "%A"),
        ("%C3%A9", "é"),
        ("%FF", "\u{FFFD}"),
        ("plain", "plain"),
    ];
    for (encoded, plain) in cases {
        assert_eq!(url_decode(encoded), plain, "{encoded:?}");
    }
}

#[test]
fn query2hash_table() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("a=1&b=2", &[("a", "1"), ("b", "2")]),
        ("b=2&a=1", &[("b", "2"), ("a", "1")]),
        ("flag", &[("flag", "")]),
        ("a=", &[("a", "")]),
        ("=v", &[("", "v")]),
        ("a=b=c", &[("a", "b=c")]),
        ("a=1&&b=2&", &[("a", "1"), ("b", "2")]),
        ("&a=1", &[("a", "1")]),
        ("a=1&a=2", &[("a", "1"), ("a", "2")]),
        ("Name=fred+flintstone", &[("Name", "fred flintstone")]),
        ("url=http://x//y", &[("url", "http://x//y")]),
        ("", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(query2hash(query), pairs(expected), "{query:?}");
    }
}

#[test]
fn seed_uri_parses_and_rebuilds() {
    let uri = parse(SEED_URI).unwrap();
    assert_eq!(uri.scheme, None);
    assert_eq!(uri.path, "/System/Process/Event");
    assert_eq!(uri.query.len(), 12);
    assert_eq!(
        uri.query[0],
        ("EventStream::event_stream".into(), "1000000003170".into())
    );
    assert_eq!(uri.query_value("event_type"), Some("USER_RUN_VM"));
    assert_eq!(uri.fragment, None);
    assert_eq!(uri.message(), "create");
    let query = SEED_URI.split_once('?').unwrap().1;
    assert_eq!(hash2query(&uri.query), query);
    assert_eq!(uri.to_string(), SEED_URI);
}

// ---- §10 item 2: trimming and `//` collapsing ------------------------------------

#[test]
fn parse_paths_table() {
    let cases: &[(&str, Option<Scheme>, &str)] = &[
        (
            "//Cloud//VM/StateMachines//Sample  ",
            None,
            "/Cloud/VM/StateMachines/Sample",
        ),
        (
            "/Cloud/VM/StateMachines/Sample  ",
            None,
            "/Cloud/VM/StateMachines/Sample",
        ),
        ("\t\n /A/B/C \r\n\0", None, "/A/B/C"),
        (
            "miqaedb:///EVM/AUTOMATE/test2/attr1",
            Some(Scheme::MiqaeDb),
            "/EVM/AUTOMATE/test2/attr1",
        ),
        ("MiqAeDb:/A/B", Some(Scheme::MiqaeDb), "/A/B"),
        ("miqae:/..", Some(Scheme::MiqaeWs), "/.."),
        ("MIQAEWS:/x", Some(Scheme::MiqaeWs), "/x"),
        ("method:///foo", Some(Scheme::Method), "/foo"),
        (
            "miqaemethod:///missing",
            Some(Scheme::MiqaeMethod),
            "/missing",
        ),
        ("miqpeca:///event", Some(Scheme::MiqPeca), "/event"),
        ("evm/AUTOMATE/test1", None, "evm/AUTOMATE/test1"),
        (
            "/EVM/AUTOMATE/test3%20with%20blank",
            None,
            "/EVM/AUTOMATE/test3%20with%20blank",
        ),
        ("/TEST/NUMBERS/", None, "/TEST/NUMBERS/"),
        ("/EVM/test5*", None, "/EVM/test5*"),
        ("", None, ""),
        ("   ", None, ""),
    ];
    for (input, scheme, path) in cases {
        let uri = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(uri.scheme, *scheme, "{input:?}");
        assert_eq!(uri.path, *path, "{input:?}");
    }
}

#[test]
fn slashes_collapse_in_path_only() {
    let uri = parse("miqaedb:///A//B?url=http://x//y#a//b").unwrap();
    assert_eq!(uri.path, "/A/B");
    assert_eq!(uri.query, pairs(&[("url", "http://x//y")]));
    assert_eq!(uri.fragment.as_deref(), Some("a//b"));
}

// Workspace paths the engine parses when substituting `${...}`.
#[test]
fn workspace_forms_table() {
    let cases: &[(&str, Option<Scheme>, &str, Option<&str>)] = &[
        ("/#attr", None, "/", Some("attr")),
        ("#attr.meth(:x)", None, "", Some("attr.meth(:x)")),
        ("#attr1", None, "", Some("attr1")),
        ("../..#x", None, "../..", Some("x")),
        ("..#X", None, "..", Some("X")),
        ("ns/Class#attr", None, "ns/Class", Some("attr")),
        ("EVM/A#attr1", None, "EVM/A", Some("attr1")),
        ("state_var#k", None, "state_var", Some("k")),
        ("State_Var#my_id", None, "State_Var", Some("my_id")),
        ("!current_message", None, "!current_message", None),
        (
            "/#miq_request.get_option(:email).upcase",
            None,
            "/",
            Some("miq_request.get_option(:email).upcase"),
        ),
        (
            "/#user.get_option(:a, :b)",
            None,
            "/",
            Some("user.get_option(:a, :b)"),
        ),
        (
            "miqaedb:///EVM/AUTOMATE/test2/attr1",
            Some(Scheme::MiqaeDb),
            "/EVM/AUTOMATE/test2/attr1",
            None,
        ),
        (
            "miqaews:/..#DISCOVER_FLAVOR1",
            Some(Scheme::MiqaeWs),
            "/..",
            Some("DISCOVER_FLAVOR1"),
        ),
        ("name", None, "name", None),
    ];
    for (input, scheme, path, fragment) in cases {
        let uri = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(uri.scheme, *scheme, "{input:?}");
        assert_eq!(uri.path, *path, "{input:?}");
        assert_eq!(uri.fragment.as_deref(), *fragment, "{input:?}");
        assert_eq!(
            uri.scheme_or(Scheme::MiqaeWs),
            scheme.unwrap_or(Scheme::MiqaeWs)
        );
    }
}

#[test]
fn message_table() {
    let cases = [
        ("/A/B/C", "create"),
        ("/A/B/C#", "create"),
        ("/A/B/C#  x", "  x"),
        ("/A/B/C# \t", "create"),
        ("/A/B/C#Discover", "discover"),
        ("/A/B/C#attr.Meth(:X)", "attr.meth(:x)"),
        ("/A/B/C?a=1#REQUEST_message", "request_message"),
    ];
    for (input, message) in cases {
        assert_eq!(parse(input).unwrap().message(), message, "{input:?}");
    }
}

#[test]
fn display_table() {
    let cases = [
        (
            "miqaedb:/System/Event/USER_RUN_VM#create",
            "miqaedb:/System/Event/USER_RUN_VM#create",
        ),
        ("miqaedb:///A//B", "miqaedb:/A/B"),
        ("MIQAE:/x#Msg", "miqaews:/x#Msg"),
        ("/A/B?b=2&a=x+y#m", "/A/B?b=2&a=x%20y#m"),
        ("/A/B?", "/A/B"),
        ("/A/B#", "/A/B#"),
        ("method:///foo?num2=3", "method:/foo?num2=3"),
        ("", ""),
    ];
    for (input, shown) in cases {
        let uri = parse(input).unwrap();
        assert_eq!(uri.to_string(), shown, "{input:?}");
        assert_eq!(parse(shown).unwrap(), uri, "{input:?}");
    }
}

// ---- §10 item 9: invalid paths ----------------------------------------------------

#[test]
fn errors_table() {
    let cases: &[(&str, usize, &str)] = &[
        ("miqaedb:A/EVM", 8, "Invalid URI <miqaedb:A/EVM>"),
        ("abc:A/EVM", 0, "Unsupported Scheme [abc]"),
        ("ABC:/A/EVM", 0, "Unsupported Scheme [abc]"),
        ("  http://x/y", 2, "Unsupported Scheme [http]"),
        ("miqaedb:", 8, "Invalid URI <miqaedb:>"),
        ("miqaedb:?a=1", 8, "Invalid URI <miqaedb:?a=1>"),
        ("miqaews:#attr", 8, "Invalid URI <miqaews:#attr>"),
        ("/A/B C", 4, "invalid character ' ' in path"),
        (" /A/B\tC", 5, "invalid character '\\t' in path"),
        (
            "miqaedb://A/\u{7f}",
            12,
            "invalid character '\\u{7f}' in path",
        ),
        ("/A#x\ny", 4, "invalid character '\\n' in fragment"),
    ];
    for (input, position, message) in cases {
        let e = err(input);
        assert_eq!(e.position, *position, "{input:?}: {e}");
        assert_eq!(e.message, *message, "{input:?}");
    }
}

/// Ruby's RFC 3986 parser reads the query as `[^#]*`: every ASCII character
/// but `#` is taken as it is, controls included. ManageIQ passes `Array::`
/// arguments joined with a raw `\x1F` (`miq_ae_object_spec.rb`).
#[test]
fn query_takes_any_ascii_but_hash() {
    let all: String = (0u8..0x80)
        .filter(|&b| b != b'#' && b != b'&' && b != b'=' && b != b'%' && b != b'+')
        .map(char::from)
        .collect();
    let u = parse(&format!("/A/B/C?k={all}#create")).unwrap();
    assert_eq!(u.query, [("k".to_string(), all.clone())]);
    assert_eq!(u.fragment.as_deref(), Some("create"));
    let u = parse("/A/B/C?Array::vms=Vm::1\x1FVm::2\tx&n=a b").unwrap();
    assert_eq!(
        u.query,
        [
            ("Array::vms".to_string(), "Vm::1\x1FVm::2\tx".to_string()),
            ("n".to_string(), "a b".to_string()),
        ]
    );
    // `#` still ends the query.
    let u = parse("/A?x=1#y=2").unwrap();
    assert_eq!(u.query, [("x".to_string(), "1".to_string())]);
    assert_eq!(u.fragment.as_deref(), Some("y=2"));
}

#[test]
fn error_display() {
    let e = err("abc:A/EVM");
    assert_eq!(
        e.to_string(),
        "invalid URI at byte 0: Unsupported Scheme [abc]"
    );
    let e = err("/A/ B");
    assert_eq!(
        e.to_string(),
        "invalid URI at byte 3: invalid character ' ' in path"
    );
}

#[test]
fn scheme_names() {
    for scheme in Scheme::ALL {
        assert_eq!(Scheme::from_name(scheme.as_str()), Some(scheme));
        assert_eq!(scheme.as_str().parse::<Scheme>(), Ok(scheme));
        assert_eq!(scheme.to_string(), scheme.as_str());
    }
    assert_eq!(Scheme::from_name("MiqAe"), Some(Scheme::MiqaeWs));
    assert_eq!(Scheme::from_name("http"), None);
    assert!(Scheme::Method.is_method() && Scheme::MiqaeMethod.is_method());
    assert!(!Scheme::MiqaeDb.is_method());
    assert_eq!(
        "Http".parse::<Scheme>().unwrap_err().message,
        "Unsupported Scheme [http]"
    );
}

// ---- §10 item 3: path render and split ----------------------------------------------

/// namespace, class, instance, attribute, rendering.
type RenderCase = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

#[test]
fn render_path_table() {
    let cases: &[RenderCase] = &[
        ("", None, None, None, ""),
        ("  ", None, Some(" "), None, ""),
        ("NAMESPACE", None, None, None, "/NAMESPACE//"),
        ("NAMESPACE/FOO", None, None, None, "/NAMESPACE/FOO//"),
        ("NAMESPACE", Some("CLASS"), None, None, "/NAMESPACE/CLASS/"),
        (
            "NAMESPACE",
            Some("CLASS"),
            Some("INSTANCE"),
            None,
            "/NAMESPACE/CLASS/INSTANCE",
        ),
        (
            "NAMESPACE",
            Some("CLASS"),
            Some("INSTANCE"),
            Some("ATTRIBUTE"),
            "/NAMESPACE/CLASS/INSTANCE/ATTRIBUTE",
        ),
        (
            "NAMESPACE",
            Some("CLASS"),
            Some("INSTANCE"),
            Some(" "),
            "/NAMESPACE/CLASS/INSTANCE",
        ),
        ("", Some("CLASS"), Some("I"), None, "//CLASS/I"),
    ];
    for (ns, class, instance, attribute, rendered) in cases {
        let got = render_path_with_attribute(ns, *class, *instance, *attribute);
        assert_eq!(
            got, *rendered,
            "{ns:?} {class:?} {instance:?} {attribute:?}"
        );
        if attribute.is_none() {
            assert_eq!(render_path(ns, *class, *instance), *rendered);
        }
    }
}

fn parts(ns: &str, class: Option<&str>, instance: Option<&str>) -> PathParts {
    PathParts {
        namespace: ns.to_owned(),
        class: class.map(str::to_owned),
        instance: instance.map(str::to_owned),
    }
}

#[test]
fn split_path_table() {
    let cases: &[(&str, PathParts)] = &[
        ("", parts("", None, None)),
        ("/", parts("", None, None)),
        ("/NS/CLASS/", parts("NS", Some("CLASS"), None)),
        // Ruby's split drops trailing empty pieces: the render of a namespace alone
        // does not split back into it.
        ("/NS//", parts("", Some("NS"), None)),
        (
            "/NS/CLASS/INSTANCE",
            parts("NS", Some("CLASS"), Some("INSTANCE")),
        ),
        (
            "/FOO/BAR/CLASS/INSTANCE",
            parts("FOO/BAR", Some("CLASS"), Some("INSTANCE")),
        ),
        (
            "evm/AUTOMATE/test1",
            parts("evm", Some("AUTOMATE"), Some("test1")),
        ),
        (
            "/EVM/AUTOMATE/test3%20with%20blank",
            parts("EVM", Some("AUTOMATE"), Some("test3%20with%20blank")),
        ),
        ("/TEST/NUMBERS/", parts("TEST", Some("NUMBERS"), None)),
        ("/test2", parts("", None, Some("test2"))),
        (
            "/AUTOMATE/test2",
            parts("", Some("AUTOMATE"), Some("test2")),
        ),
        (
            "/ManageIQ/System/Process/Event",
            parts("ManageIQ/System", Some("Process"), Some("Event")),
        ),
        ("..", parts("", None, Some(".."))),
    ];
    for (path, expected) in cases {
        assert_eq!(split_path(path), *expected, "{path:?}");
    }
}

#[test]
fn split_render_round_trip() {
    let cases = [
        ("NS", "CLASS", "INSTANCE"),
        ("FOO/BAR", "CLASS", "INSTANCE"),
        ("NS", "CLASS", "test3%20with%20blank"),
    ];
    for (ns, class, instance) in cases {
        let path = render_path(ns, Some(class), Some(instance));
        let split = split_path(&path);
        assert_eq!(split, parts(ns, Some(class), Some(instance)));
        assert_eq!(split.render(), path);
    }
}

#[test]
fn split_path_options() {
    let path = "/TEST_NAMESPACE/TEST_CLASS/TEST_INSTANCE";
    let no_instance = SplitOptions {
        has_instance_name: false,
        has_attribute_name: false,
    };
    let (p, attr) = split_path_with(path, no_instance);
    assert_eq!(
        p,
        parts("TEST_NAMESPACE/TEST_CLASS", Some("TEST_INSTANCE"), None)
    );
    assert_eq!(attr, None);

    let with_attr = SplitOptions {
        has_instance_name: true,
        has_attribute_name: true,
    };
    let (p, attr) = split_path_with("/EVM/AUTOMATE/test2/attr1", with_attr);
    assert_eq!(p, parts("EVM", Some("AUTOMATE"), Some("test2")));
    assert_eq!(attr.as_deref(), Some("attr1"));

    let (p, attr) = split_path_with("/EVM/AUTOMATE/test2/", with_attr);
    assert_eq!(p, parts("EVM", Some("AUTOMATE"), Some("test2")));
    assert_eq!(attr, None);
    assert_eq!(
        parse("miqaedb:///EVM/AUTOMATE/test2/attr1")
            .unwrap()
            .path_parts(),
        parts("EVM/AUTOMATE", Some("test2"), Some("attr1"))
    );
}

// ---- §10 items 15, 16: argument keys and Array:: values -------------------------------

#[test]
fn classify_arg_key_table() {
    let plain = |s: &str| ArgKey::Plain(s.into());
    let obj = |c: &str, n: &str| ArgKey::ObjectRef {
        class: c.into(),
        name: n.into(),
    };
    let typed = |d: &str, n: &str| ArgKey::Typed {
        datatype: d.into(),
        name: n.into(),
    };
    let cases = [
        ("name", plain("name")),
        ("Name", plain("name")),
        ("aTTr1", plain("attr1")),
        ("VmOrTemplate::vm", obj("VmOrTemplate", "vm")),
        (
            "EventStream::event_stream",
            obj("EventStream", "event_stream"),
        ),
        ("MiqServer::Miq_Server", obj("MiqServer", "miq_server")),
        (
            "ManageIQ::Providers::Vm::VM",
            obj("ManageIQ::Providers::Vm", "vm"),
        ),
        ("fred::x", obj("fred", "x")),
        ("integer::n", typed("integer", "n")),
        ("Integer::N", typed("integer", "n")),
        ("Fixnum::n", typed("fixnum", "n")),
        ("BOOLEAN::b", typed("boolean", "b")),
        ("float::f", typed("float", "f")),
        ("symbol::s", typed("symbol", "s")),
        ("Time::t", typed("time", "t")),
        ("array::a2", ArgKey::Array("a2".into())),
        ("password::p", typed("password", "p")),
        ("string::s", typed("string", "s")),
        ("Array::my_objects", ArgKey::Array("my_objects".into())),
        ("ARRAY::VMs", ArgKey::Array("vms".into())),
        ("Array::", ArgKey::Array("array".into())),
        ("Host::", obj("", "host")),
        ("::x", obj("", "x")),
        ("::", plain("::")),
        ("a:::B", obj("a", ":b")),
        ("a::::b", obj("a::", "b")),
        ("arrays", plain("arrays")),
    ];
    for (key, expected) in cases {
        assert_eq!(classify_arg_key(key), expected, "{key:?}");
        assert_eq!(classify_arg_key_owned(key.to_string()), expected, "{key:?}");
    }
}

#[test]
fn split_array_value_table() {
    let typed = |c: &str, v: &str| ArrayElem::Typed {
        class: c.into(),
        value: v.into(),
    };
    let plain = |s: &str| ArrayElem::Plain(s.into());
    let cases: Vec<(&str, Vec<ArrayElem>)> = vec![
        (
            "integer::1\x1F integer::3",
            vec![typed("integer", "1"), typed("integer", "3")],
        ),
        (
            "integer::1\x1Finteger::3\x1Finteger::10",
            vec![
                typed("integer", "1"),
                typed("integer", "3"),
                typed("integer", "10"),
            ],
        ),
        (
            "abc\x1Fxyz\x1F\x1F1",
            vec![plain("abc"), plain("xyz"), plain("1")],
        ),
        (
            "Vm::1\x1FExtManagementSystem::2\x1FVm::3",
            vec![
                typed("Vm", "1"),
                typed("ExtManagementSystem", "2"),
                typed("Vm", "3"),
            ],
        ),
        (
            "VmOrTemplate::1\x1F\x1F\x1FVmOrTemplate::2",
            vec![typed("VmOrTemplate", "1"), typed("VmOrTemplate", "2")],
        ),
        (
            "'1,1'\x1F\"3,3\"\x1Finteger::10",
            vec![plain("'1,1'"), plain("\"3,3\""), typed("integer", "10")],
        ),
        (
            "VmOrTemplate::1\x1Ffred::12",
            vec![typed("VmOrTemplate", "1"), typed("fred", "12")],
        ),
        ("a::b::c", vec![typed("a", "b::c")]),
        ("\x1F \x1F", vec![]),
        ("", vec![]),
    ];
    for (value, expected) in cases {
        assert_eq!(split_array_value(value), expected, "{value:?}");
    }
}

#[test]
fn array_arg_from_uri() {
    let uri = parse("/A/B/C?Array%3A%3Amy_objects=Vm%3A%3A1%1FExtManagementSystem%3A%3A2%1FVm%3A%3A3&Array%3A%3Ax=").unwrap();
    let (key, value) = &uri.query[0];
    assert_eq!(classify_arg_key(key), ArgKey::Array("my_objects".into()));
    assert_eq!(split_array_value(value).len(), 3);
    let (key, value) = &uri.query[1];
    assert_eq!(classify_arg_key(key), ArgKey::Array("x".into()));
    assert_eq!(split_array_value(value), vec![]);
}

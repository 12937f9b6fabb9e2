use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_700_000_000_000_000_000;

fn parse(body: &str) -> (Vec<Point>, Vec<LineError>) {
    parse_points(body.as_bytes(), Precision::Nanoseconds, NOW)
}

fn one(line: &str) -> Point {
    let (points, errors) = parse(line);
    assert!(errors.is_empty(), "{line:?}: {errors:?}");
    assert_eq!(points.len(), 1, "{line:?}");
    points.into_iter().next().unwrap()
}

fn error(line: &str) -> LineError {
    let (points, errors) = parse(line);
    assert!(points.is_empty(), "{line:?} parsed as {points:?}");
    assert_eq!(errors.len(), 1, "{line:?}: {errors:?}");
    errors.into_iter().next().unwrap()
}

fn tags(p: &Point) -> Vec<(&str, &str)> {
    p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn parses_every_field_type() {
    let p = one(r#"m f=1.5,i=-42i,u=42u,b=t,s="hi" 123"#);
    assert_eq!(p.measurement, "m");
    assert_eq!(
        p.fields,
        vec![
            ("f".into(), FieldValue::Float(1.5)),
            ("i".into(), FieldValue::Integer(-42)),
            ("u".into(), FieldValue::Unsigned(42)),
            ("b".into(), FieldValue::Boolean(true)),
            ("s".into(), FieldValue::String("hi".into())),
        ]
    );
    assert_eq!(p.time, 123);
}

#[test]
fn every_boolean_spelling() {
    for (text, value) in [
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ] {
        assert_eq!(one(&format!("m v={text}")).fields[0].1, FieldValue::Boolean(value), "{text}");
    }
    for bad in ["tRUE", "yes", "truee", "FaLsE"] {
        assert!(matches!(error(&format!("m v={bad}")).reason, Reason::InvalidValue(_)), "{bad}");
    }
}

#[test]
fn float_spellings() {
    for (text, value) in [
        ("1", 1.0),
        ("-1", -1.0),
        ("1.", 1.0),
        (".5", 0.5),
        ("-.5", -0.5),
        ("+2.25", 2.25),
        ("1e3", 1000.0),
        ("1.5E-3", 0.0015),
        ("0.1", 0.1),
        ("123456789012345678901234567890", 1.2345678901234568e29),
        ("58.1", 58.1),
    ] {
        assert_eq!(one(&format!("m v={text}")).fields[0].1, FieldValue::Float(value), "{text}");
    }
}

#[test]
fn nan_and_infinity_are_rejected() {
    for text in ["NaN", "nan", "inf", "-inf", "Infinity", "+Inf"] {
        assert_eq!(error(&format!("m v={text}")).reason, Reason::NotFinite, "{text}");
    }
    assert!(matches!(error("m v=1e400").reason, Reason::FloatOutOfRange(_)));
}

#[test]
fn bad_numbers_are_named() {
    for text in ["1.2.3", "1e", "--1", "12a", "0x10", "1_000", "-"] {
        let e = error(&format!("m v={text}"));
        assert_eq!(e.reason, Reason::InvalidValue(text.into()), "{text}");
        assert_eq!(e.column, 5);
    }
    assert!(matches!(error("m v=9223372036854775808i").reason, Reason::IntegerOutOfRange(_)));
    assert_eq!(one("m v=-9223372036854775808i").fields[0].1, FieldValue::Integer(i64::MIN));
    assert_eq!(one("m v=18446744073709551615u").fields[0].1, FieldValue::Unsigned(u64::MAX));
    assert!(matches!(error("m v=18446744073709551616u").reason, Reason::UnsignedOutOfRange(_)));
    assert!(matches!(error("m v=-1u").reason, Reason::InvalidValue(_)));
    assert!(matches!(error("m v=1.5i").reason, Reason::InvalidValue(_)));
    // Leading zeros do not count toward the range.
    assert_eq!(one("m v=0000000000000000000000001i").fields[0].1, FieldValue::Integer(1));
    assert_eq!(one("m v=000000000000000000000000018446744073709551615u").fields[0].1, FieldValue::Unsigned(u64::MAX));
    assert_eq!(one("m v=1 00000000000000000000000042").time, 42);
}

#[test]
fn escapes_in_names() {
    let p = one(r"my\ cpu\,x,ta\ g\=1=v\,a\ l\=ue f\ i\,e\=ld=1");
    assert_eq!(p.measurement, "my cpu,x");
    assert_eq!(tags(&p), vec![("ta g=1", "v,a l=ue")]);
    assert_eq!(p.fields[0].0, "f i,e=ld");
    // Backslash before anything else is literal (Windows paths), `\\` is one backslash.
    let p = one(r"m,path=C:\Windows\\x v=1");
    assert_eq!(tags(&p), vec![("path", r"C:\Windows\x")]);
    // `=` needs no escape in a measurement.
    assert_eq!(one("a=b v=1").measurement, "a=b");
}

#[test]
fn escapes_in_strings() {
    let p = one(r#"m s="say \"hi\" \\ back\slash, = and spaces""#);
    assert_eq!(p.fields[0].1, FieldValue::String(r#"say "hi" \ back\slash, = and spaces"#.into()));
    assert_eq!(one(r#"m s="""#).fields[0].1, FieldValue::String(String::new()));
}

#[test]
fn tags_are_sorted_and_duplicates_rejected() {
    let p = one("m,z=1,a=2,m=3 v=1");
    assert_eq!(tags(&p), vec![("a", "2"), ("m", "3"), ("z", "1")]);
    assert_eq!(error("m,a=1,b=2,a=3 v=1").reason, Reason::DuplicateTag("a".into()));
    assert_eq!(error(r"m,a\ b=1,a\ b=2 v=1").reason, Reason::DuplicateTag("a b".into()));
}

#[test]
fn duplicate_fields_are_rejected_also_on_long_lines() {
    assert_eq!(error("m a=1,b=2,a=3").reason, Reason::DuplicateField("a".into()));
    let many: Vec<String> = (0..100).map(|i| format!("f{i}=1")).collect();
    one(&format!("m {}", many.join(",")));
    let line = format!("m {},f7=2", many.join(","));
    let e = error(&line);
    assert_eq!(e.reason, Reason::DuplicateField("f7".into()));
    assert_eq!(e.column, line.rfind("f7=").unwrap() + 1, "the column of the second `f7`");
}

#[test]
fn timestamps_and_precision() {
    let (points, _) = parse_points(b"m v=1 1700000000", Precision::Seconds, NOW);
    assert_eq!(points[0].time, 1_700_000_000_000_000_000);
    let (points, _) = parse_points(b"m v=1 2", Precision::Hours, NOW);
    assert_eq!(points[0].time, 7_200_000_000_000);
    assert_eq!(one("m v=1").time, NOW);
    assert_eq!(one("m v=1 -5").time, -5);
    assert_eq!(one("m v=1 123   ").time, 123);
    let (_, errors) = parse_points(b"m v=1 9223372036854775807", Precision::Seconds, NOW);
    assert!(matches!(errors[0].reason, Reason::TimestampOutOfRange(_, Precision::Seconds)));
    assert!(matches!(error("m v=1 99999999999999999999").reason, Reason::TimestampOutOfRange(..)));
    assert!(matches!(error("m v=1 12x").reason, Reason::InvalidTimestamp(_)));
    assert!(matches!(error("m v=1 1.5").reason, Reason::InvalidTimestamp(_)));
    assert_eq!(error("m v=1 123 456").reason, Reason::TrailingText);
}

#[test]
fn comments_blank_lines_and_crlf() {
    let body = "# a comment\n\n   \n  # indented comment\r\nm v=1\r\n\nm v=2 5\n";
    let (points, errors) = parse(body);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(points.len(), 2);
    assert_eq!(points[1].time, 5);
}

#[test]
fn malformed_lines_name_line_column_and_reason() {
    let cases: &[(&str, usize, Reason)] = &[
        ("m", 2, Reason::MissingFields),
        ("m ", 3, Reason::MissingFields),
        ("m,t=1", 6, Reason::MissingFields),
        (",t=1 v=1", 1, Reason::EmptyMeasurement),
        (" v=1", 5, Reason::MissingFields), // leading blanks are skipped: `v=1` is the measurement
        ("m,t v=1", 4, Reason::MissingTagValue),
        ("m,=1 v=1", 3, Reason::EmptyTagKey),
        ("m,t= v=1", 5, Reason::EmptyTagValue),
        ("m,t=a=b v=1", 6, Reason::EqualsInTagValue),
        ("m v", 4, Reason::MissingFieldEquals),
        ("m =1", 3, Reason::EmptyFieldKey),
        ("m v=", 5, Reason::MissingFieldValue),
        ("m v=,w=1", 5, Reason::MissingFieldValue),
        ("m v=1,", 7, Reason::MissingFieldEquals),
        (r#"m s="abc"#, 5, Reason::UnterminatedString),
        (r#"m s="abc\""#, 5, Reason::UnterminatedString),
        (r#"m s="a"x"#, 8, Reason::AfterString(b'x')),
        ("m,a=1,b=2,a=3 v=1", 11, Reason::DuplicateTag("a".into())),
        ("m a=1,b=2,a=3", 11, Reason::DuplicateField("a".into())),
        ("m\\", 2, Reason::TrailingBackslash),
        ("m v=1,w\\", 8, Reason::TrailingBackslash),
        ("m time=1", 3, Reason::ReservedKey("field")),
        ("m,time=1 v=1", 3, Reason::ReservedKey("tag")),
    ];
    for (line, column, reason) in cases {
        let body = format!("ok v=1\n{line}\nok v=2\n");
        let (points, errors) = parse(&body);
        assert_eq!(points.len(), 2, "{line:?}: the good lines around a bad one are kept");
        assert_eq!(errors.len(), 1, "{line:?}: {errors:?}");
        let e = &errors[0];
        assert_eq!((e.line, e.column, &e.reason), (2, *column, reason), "{line:?}: {e}");
    }
}

#[test]
fn nul_bytes_are_rejected_per_line_even_in_comments() {
    let body = b"m v=1\nm,t=a\0b v=1\n# note \0\nm v=2\nm s=\"x\0\" v=3\n\0\nm v=4\n";
    let (points, errors) = parse_points(body, Precision::Nanoseconds, NOW);
    assert_eq!(points.len(), 3);
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.column, e.reason.clone())).collect();
    assert_eq!(
        found,
        vec![(2, 6, Reason::NulByte), (3, 8, Reason::NulByte), (5, 7, Reason::NulByte), (6, 1, Reason::NulByte)]
    );
}

#[test]
fn invalid_utf8_is_reported_per_line() {
    let mut body = b"m v=1\nm,t=\xff\xfe v=1\nm v=2\nm s=\"\xc3\x28\"\nm,t=\xc3\xa9 v=3\n".to_vec();
    body.extend_from_slice("m,tag=ünïcødé v=4\n".as_bytes());
    let (points, errors) = parse_points(&body, Precision::Nanoseconds, NOW);
    assert_eq!(points.len(), 4);
    assert_eq!(errors.iter().map(|e| (e.line, e.column)).collect::<Vec<_>>(), vec![(2, 5), (4, 6)]);
    assert!(errors.iter().all(|e| e.reason == Reason::InvalidUtf8));
    assert_eq!(points[2].tags[0].1, "é");
}

#[test]
fn a_newline_inside_quotes_ends_the_line() {
    let (points, errors) = parse("m s=\"a\nb\" 1\n");
    assert!(points.is_empty());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].reason, Reason::UnterminatedString);
}

#[test]
fn canonical_series_is_offered_only_when_the_input_is_canonical() {
    let check = |line: &str, expected: Option<&str>| {
        let mut parser = Parser::new(line.as_bytes(), Precision::Nanoseconds, 0, 1);
        let parsed = parser.next().unwrap().unwrap();
        assert_eq!(parsed.canonical_series, expected.map(str::as_bytes), "{line}");
    };
    check("cpu,a=1,b=2 v=1", Some("cpu,a=1,b=2"));
    check("cpu v=1", Some("cpu"));
    check("cpu,b=1,a=2 v=1", None);
    check(r"cpu,a=1\ x v=1", None);
}

// Generators for the round-trip property: any text (escapes, quotes, unicode), any numbers.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,8}",
        r#"[ -~éü日本\\,= "]{1,12}"#.prop_filter("not blank, no comment, not time", |s| {
            !s.trim().is_empty() && !s.starts_with('#') && s != "time"
        }),
    ]
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Integer),
        any::<u64>().prop_map(FieldValue::Unsigned),
        any::<bool>().prop_map(FieldValue::Boolean),
        r#"[ -~é\\"\t]{0,16}"#.prop_map(FieldValue::String),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    (
        name(),
        proptest::collection::btree_map(name(), name(), 0..5),
        proptest::collection::btree_map(name(), field_value(), 1..6),
        any::<i64>(),
    )
        .prop_filter("no leading blanks in the measurement", |(m, ..)| !m.starts_with([' ', '\t']))
        .prop_map(|(measurement, tags, fields, time)| Point {
            measurement,
            tags: tags.into_iter().collect(),
            fields: fields.into_iter().collect(),
            time,
        })
}

fn render(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::new();
    render_points(points, &mut out);
    out
}

proptest! {
    #[test]
    fn parse_inverts_render(points in proptest::collection::vec(point(), 1..8)) {
        let text = render(&points);
        let (parsed, errors) = parse_points(&text, Precision::Nanoseconds, NOW);
        prop_assert!(errors.is_empty(), "{:?}\n{}", errors, String::from_utf8_lossy(&text));
        prop_assert_eq!(&parsed, &points);
        prop_assert_eq!(render(&parsed), text);
    }

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (points, errors) = parse_points(&body, Precision::Nanoseconds, NOW);
        let lines = body.split(|&b| b == b'\n').count();
        prop_assert!(points.len() + errors.len() <= lines);
        for e in &errors {
            prop_assert!(e.line >= 1 && e.line <= lines && e.column >= 1);
        }
    }

    #[test]
    fn mutated_valid_lines_never_panic(
        points in proptest::collection::vec(point(), 1..4),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut text = render(&points);
        for (at, byte) in edits {
            let i = at.index(text.len());
            text[i] = byte;
        }
        let _ = parse_points(&text, Precision::Nanoseconds, NOW);
    }
}

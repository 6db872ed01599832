// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! The JSON Schema of every text rule (what the OpenAPI document states)
//! accepts exactly what the domain's parser accepts: checked on every short
//! string over an alphabet of the characters the rules care about, and at
//! the length limits.

use boon::{Compiler, Draft, Schemas};
use serde_json::{Value, json};
use stockflow_domain::{
    BatchCode, Email, NameSearch, Notes, ParseError, PauseNote, ProductName, Quantity, ScheduleName, Sku, SkuPrefix,
    TextRule, TokenLifetime, TokenName, Unit,
};

/// Letters, digits, the punctuation of codes and emails, units, every kind
/// of space and control the rules treat apart, and multi-byte characters.
const ALPHABET: &[char] = &[
    'a', 'Z', '0', '7', '.', '_', '/', '-', '@', 'd', 'h', 'm', ' ', '\t', '\n', '\r', '\0', '\u{1}', '\u{7f}',
    '\u{85}', '\u{a0}', '\u{2003}', '\u{3000}', '\u{200b}', '\u{202e}', 'é', '€', '😀', '<', '%',
];

fn corpus() -> Vec<String> {
    let mut strings = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..3 {
        last = last.iter().flat_map(|s| ALPHABET.iter().map(move |c| format!("{s}{c}"))).collect();
        strings.extend(last.iter().cloned());
    }
    strings
}

struct Schema {
    schemas: Schemas,
    index: boon::SchemaIndex,
}

impl Schema {
    fn new(schema: Value) -> Self {
        let mut compiler = Compiler::new();
        compiler.set_default_draft(Draft::V2020_12);
        compiler.add_resource("urn:rule", schema).unwrap();
        let mut schemas = Schemas::new();
        let index = compiler.compile("urn:rule", &mut schemas).expect("the rule's schema compiles");
        Self { schemas, index }
    }

    fn of(rule: TextRule) -> Self {
        Self::new(json!({"type": "string", "pattern": rule.pattern, "maxLength": rule.max_chars}))
    }

    fn pattern(pattern: &str) -> Self {
        Self::new(json!({"type": "string", "pattern": pattern}))
    }

    fn accepts(&self, value: &str) -> bool {
        self.schemas.validate(&json!(value), self.index).is_ok()
    }
}

fn agree<T>(name: &str, schema: &Schema, parse: impl Fn(&str) -> Result<T, ParseError>, extra: &[String]) {
    let mut checked = 0;
    for value in corpus().iter().chain(extra) {
        assert_eq!(schema.accepts(value), parse(value).is_ok(), "{name}: schema and parser disagree on {value:?}");
        checked += 1;
    }
    assert!(checked > 20_000, "{name}: {checked}");
}

/// `max` and `max + 1` characters, bare and with spaces around.
fn at_the_limit(max: usize, fill: &str) -> Vec<String> {
    let mut values = Vec::new();
    for count in [max - 2, max - 1, max, max + 1] {
        let body = fill.repeat(count);
        values.push(body.clone());
        values.push(format!(" {body}"));
        values.push(format!("{body} "));
    }
    values
}

#[test]
fn codes_skus_and_prefixes() {
    let extra = at_the_limit(64, "a");
    agree("sku", &Schema::of(Sku::RULE), Sku::parse, &extra);
    agree("sku_prefix", &Schema::of(SkuPrefix::RULE), SkuPrefix::parse, &extra);
    agree("code", &Schema::of(BatchCode::RULE), BatchCode::parse, &extra);
}

#[test]
fn trimmed_names() {
    agree("name", &Schema::of(ProductName::RULE), ProductName::parse, &at_the_limit(200, "é"));
    agree("unit", &Schema::of(Unit::RULE), Unit::parse, &at_the_limit(32, "k"));
    agree("token name", &Schema::of(TokenName::RULE), TokenName::parse, &at_the_limit(100, "😀"));
    agree("schedule name", &Schema::of(ScheduleName::RULE), ScheduleName::parse, &at_the_limit(100, "é"));
    agree("pause note", &Schema::of(PauseNote::RULE), PauseNote::parse, &at_the_limit(500, "x"));
}

#[test]
fn searches_and_notes() {
    agree("q", &Schema::of(NameSearch::RULE), NameSearch::parse, &at_the_limit(200, "q"));
    let mut notes = at_the_limit(10_000, "n");
    notes.push("line 1\r\nline 2\ttab".to_owned());
    agree("notes", &Schema::of(Notes::RULE), Notes::parse, &notes);
}

#[test]
fn emails() {
    let local = "a".repeat(310);
    let extra: Vec<String> = [
        "ann@example.com",
        "a@b.c",
        "a@.bc",
        "a@bc.",
        "a@b..c",
        "a@b@c.d",
        "ann@exa mple.com",
        " ann@example.com",
        "ann@example.com\u{3000}",
        "ann@exa\u{0}mple.com",
        "Ann.Lee+tag@Example.co.uk",
        "élodie@société.fr",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([format!("{local}@exampl.com"), format!("{local}@example.com"), format!("{local}@example.co")])
    .collect();
    agree("email", &Schema::of(Email::RULE), Email::parse, &extra);
}

#[test]
fn lifetimes_and_quantities() {
    let lifetimes: Vec<String> =
        ["30d", "9999d", "10000d", "99999h", "100000h", "9999999m", "10000000m", "0d", "01d", "1é", "€", "+1d"]
            .map(str::to_owned)
            .to_vec();
    agree("expires_in", &Schema::pattern(TokenLifetime::PATTERN), TokenLifetime::parse, &lifetimes);
    let quantities: Vec<String> = [
        "0",
        "12.5",
        "007",
        "0.000001",
        "1.0000000",
        "1.0000001",
        "99999999999999.999999",
        "100000000000000",
        "000100000000000000",
        "00099999999999999",
        "1.",
        ".5",
        "1e3",
        "-1",
        "1,5",
    ]
    .map(str::to_owned)
    .to_vec();
    agree("quantity", &Schema::pattern(Quantity::PATTERN), Quantity::parse, &quantities);
}

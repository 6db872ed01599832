//! Reading the served document: its operations, `$ref`s, and whether a
//! JSON value fits one of its schemas. The checker knows only the keywords
//! the document uses, and fails on any other, so a schema it cannot judge
//! is never passed unseen. It checks types, enums, required and listed
//! properties, items, `oneOf`, `anyOf`, `allOf` and string lengths; it
//! ignores `format`, `pattern` (the domain's own tests hold patterns to the
//! parsers), `minimum`, `maximum`, `exclusiveMaximum` and `multipleOf`.

use serde_json::Value;

pub(crate) const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// `(METHOD, path, operation)` for every operation of the document.
pub(crate) fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut found = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    found
}

/// Follows `$ref`s (local ones only) to what they name.
pub(crate) fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
        value = target(doc, reference).unwrap_or_else(|| panic!("{reference} does not resolve"));
    }
    value
}

pub(crate) fn target<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` anywhere in `value`.
pub(crate) fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference.clone());
            }
            map.values().for_each(|child| references(child, found));
        }
        Value::Array(items) => items.iter().for_each(|child| references(child, found)),
        _ => {}
    }
}

const UNDERSTOOD: [&str; 29] = [
    "$ref",
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "oneOf",
    "anyOf",
    "allOf",
    "additionalProperties",
    "propertyNames",
    "description",
    "title",
    "format",
    "example",
    "examples",
    "minimum",
    "maximum",
    "pattern",
    "default",
    "nullable",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "deprecated",
    "maxLength",
    "minLength",
    "exclusiveMaximum",
    "multipleOf",
];

/// Whether `value` fits `schema`. Stricter than JSON Schema in one way: an
/// object whose schema lists properties may hold no others, so a field the
/// api sends but the document leaves out is caught.
pub(crate) fn fits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(unknown) =
        schema.as_object().into_iter().flatten().map(|(k, _)| k).find(|k| !UNDERSTOOD.contains(&k.as_str()))
    {
        return Err(format!("{at}: the checker does not understand `{unknown}` in {schema}"));
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // Each part lists only its own properties, so the value is checked
        // against their union, then against each part with the rest removed.
        let mut listed = Vec::new();
        for part in parts {
            let part = resolve(doc, part);
            listed.extend(part.get("properties").and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k));
        }
        if let Some(extra) = value.as_object().and_then(|object| object.keys().find(|key| !listed.contains(key))) {
            return Err(format!("{at}.{extra}: not in the documented properties"));
        }
        for part in parts {
            let part = resolve(doc, part);
            let own = part.get("properties").and_then(Value::as_object);
            let mine = match value.as_object() {
                Some(object) => Value::Object(
                    object
                        .iter()
                        .filter(|(k, _)| own.is_some_and(|p| p.contains_key(*k)))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                None => value.clone(),
            };
            fits(doc, part, &mine, at)?;
        }
    }
    if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = choices.iter().filter(|choice| fits(doc, choice, value, at).is_ok()).count();
        if matching != 1 {
            return Err(format!("{at}: {value} fits {matching} of the oneOf choices, not exactly one"));
        }
    }
    if let Some(choices) = schema.get("anyOf").and_then(Value::as_array)
        && !choices.iter().any(|choice| fits(doc, choice, value, at).is_ok())
    {
        return Err(format!("{at}: {value} fits none of the anyOf choices"));
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema.get("maxLength").and_then(Value::as_u64).is_some_and(|max| length > max) {
            return Err(format!("{at}: {value} is longer than maxLength"));
        }
        if schema.get("minLength").and_then(Value::as_u64).is_some_and(|min| length < min) {
            return Err(format!("{at}: {value} is shorter than minLength"));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => return Err(format!("{at}: type {other}")),
        };
        if !types.iter().any(|kind| is_a(kind, value)) {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: required `{name}` is missing from {value}"));
            }
        }
        for (name, field) in object {
            let here = format!("{at}.{name}");
            match (properties.and_then(|p| p.get(name)), schema.get("additionalProperties")) {
                (Some(property), _) => fits(doc, property, field, &here)?,
                (None, Some(Value::Bool(true))) => {}
                (None, Some(extra)) if extra.is_object() => fits(doc, extra, field, &here)?,
                (None, _) if properties.is_some() => return Err(format!("{here}: not in the documented properties")),
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            fits(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn is_a(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

//! The OpenAPI 3.1 document of the JSON management API, hand-written (assets/openapi.json) and
//! held to the router by a test: every operation the router serves is documented, and nothing
//! else is. Tests here also hold it to the rules every operation shares (the statuses its
//! credentials and body can cause, references that resolve); `scripts/schemathesis` holds it to
//! what a running server answers.

/// The document, served at `GET /api/console/v1/openapi.json`.
pub const DOCUMENT: &str = include_str!("../assets/openapi.json");

/// `(METHOD, path)` of every operation the API router serves, in the document's path syntax.
#[must_use]
pub fn operations() -> Vec<(&'static str, &'static str)> {
    crate::api::routes().1
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn document_lists_exactly_the_routes_the_router_serves() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    documented.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> =
            super::operations().into_iter().map(|(m, p)| (m.to_owned(), p.to_owned())).collect();
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }

    fn document() -> serde_json::Value {
        serde_json::from_str(super::DOCUMENT).expect("valid JSON")
    }

    /// Every `(METHOD, path, operation)` of the document.
    fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                ops.push((method.to_ascii_uppercase(), path.clone(), op.clone()));
            }
        }
        ops
    }

    /// The credential names an operation requires in every alternative (its own `security`, or
    /// the document's).
    fn required_credentials(doc: &serde_json::Value, op: &serde_json::Value) -> BTreeSet<String> {
        let security = op.get("security").unwrap_or(&doc["security"]).as_array().expect("security list");
        let mut alternatives =
            security.iter().map(|alt| alt.as_object().expect("requirement").keys().cloned().collect::<BTreeSet<_>>());
        let first = alternatives.next().unwrap_or_default();
        alternatives.fold(first, |acc, alt| acc.intersection(&alt).cloned().collect())
    }

    #[test]
    fn every_operation_documents_the_statuses_its_credentials_and_body_can_cause() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            let responses = op["responses"].as_object().expect("responses");
            let has = |s: &str| responses.contains_key(s);
            assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success answer");
            assert!(!responses.keys().any(|s| s.contains('X')), "{method} {path}: a status range ({responses:?})");
            let creds = required_credentials(&doc, &op);
            if creds.contains("session") {
                assert!(has("401"), "{method} {path} needs a session but does not document 401");
            }
            if creds.contains("csrf") {
                assert!(has("403"), "{method} {path} needs X-CSRF-Token but does not document 403");
            }
            if op.get("requestBody").is_some() {
                assert!(has("400"), "{method} {path} takes a JSON body but does not document 400");
                assert!(creds.contains("csrf"), "{method} {path} changes state without X-CSRF-Token");
            }
            if path.contains("{id}") {
                assert!(has("404"), "{method} {path} names a key but does not document 404");
            }
        }
    }

    #[test]
    fn lists_are_arrays_and_answers_are_closed_objects() {
        let doc = document();
        for path in ["/api/console/v1/keys", "/api/console/v1/audit"] {
            let schema = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
            assert_eq!(schema["type"], "array", "{path}");
        }
        for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
            if schema["type"] == "object" && name != "Code" {
                let props = schema["properties"].as_object().expect("properties");
                let required: BTreeSet<&str> =
                    schema["required"].as_array().expect("required").iter().filter_map(|r| r.as_str()).collect();
                assert_eq!(schema["additionalProperties"], false, "{name}: answers name every field");
                assert_eq!(required, props.keys().map(String::as_str).collect(), "{name}: every field is always sent");
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &serde_json::Value, v: &serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                        let pointer = r.strip_prefix('#').expect("local reference");
                        assert!(doc.pointer(pointer).is_some(), "unresolved {r}");
                    }
                    m.values().for_each(|x| walk(doc, x));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
                _ => {}
            }
        }
        let doc = document();
        walk(&doc, &doc);
    }
}

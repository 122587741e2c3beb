//! The OpenAPI 3.1 document of the JSON management API, hand-written (assets/openapi.json) and
//! held to the router by a test: every operation the router serves is documented, and nothing
//! else is.

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
}

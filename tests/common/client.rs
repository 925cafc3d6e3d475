//! A client of a running standalone with a key of its own, and the two tenants most
//! tests of tenant data start from.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{KEY, Standalone};

/// Calls the API of `app` with `key`.
pub struct Client<'a> {
    pub app: &'a Standalone,
    pub key: String,
}

impl Client<'_> {
    /// The status and body (JSON, or the text as a JSON string) of one call.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .app
            .http
            .request(method, self.app.url(path))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// The body of a GET that must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// The `field` of every item of the list under `items`, following `next_cursor`
    /// page by page; and how many pages there were.
    pub async fn all_pages(&self, path: &str, items: &str, field: &str) -> (Vec<String>, usize) {
        let (mut values, mut pages) = (Vec::new(), 0);
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = match &cursor {
                Some(c) => self.get(&format!("{path}{sep}cursor={c}")).await,
                None => self.get(path).await,
            };
            pages += 1;
            for item in page[items].as_array().unwrap() {
                values.push(item[field].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return (values, pages),
            }
        }
    }

    /// The error code of a call that must fail, with its status.
    pub async fn error(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let (status, body) = self.send(method.clone(), path, body).await;
        assert!(!status.is_success(), "{method} {path}: {status} {body}");
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"));
        (status, code.to_owned())
    }
}

/// Two tenants, `acme` and `globex`, with a user key each, and the operator:
/// `(admin, acme, globex)`.
pub async fn tenants(app: &Standalone) -> (Client<'_>, Client<'_>, Client<'_>) {
    let admin = Client {
        app,
        key: KEY.to_owned(),
    };
    let mut keys = Vec::new();
    for tenant in ["acme", "globex"] {
        let (status, body) = admin
            .send(
                Method::POST,
                "/v1/tenants",
                Some(json!({"id": tenant, "name": tenant})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, key) = admin
            .send(
                Method::POST,
                "/v1/keys",
                Some(json!({"name": "app", "role": "user", "tenant": tenant})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        keys.push(key["key"].as_str().unwrap().to_owned());
    }
    let globex = keys.pop().unwrap();
    let acme = keys.pop().unwrap();
    (
        admin,
        Client { app, key: acme },
        Client { app, key: globex },
    )
}

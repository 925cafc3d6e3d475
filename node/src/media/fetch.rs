//! [`UrlFetcher`]: a media file fetched from a URL a client gave, to send it. The same
//! SSRF rule as webhooks ([`crate::egress`]): http(s) only, the name resolved once and
//! every address checked, the connection made to a checked address, no redirects; a
//! connect timeout, a timeout between bytes, and the file's type limit while it streams.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};

use super::{MediaError, MediaLibrary, MediaOrigin, MediaRecord, MediaType, NewMedia};
use crate::egress;

/// How long connecting may take, and how long the answer may go without a byte.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches media URLs into a [`MediaLibrary`].
#[derive(Debug, Clone)]
pub struct UrlFetcher {
    client: reqwest::Client,
    allow_private: bool,
}

impl UrlFetcher {
    /// `allow_private`: URLs may point at loopback and private addresses (tests,
    /// private networks).
    pub fn new(allow_private: bool) -> UrlFetcher {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("wafleet-media/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(egress::GuardedResolver { allow_private }))
            .build()
            .expect("the media HTTP client builds");
        UrlFetcher {
            client,
            allow_private,
        }
    }

    /// Stores what `url` answers as a new file of `tenant`, sent as `media_type`: its
    /// MIME type from the answer's `Content-Type`, its name from `filename` or the
    /// URL's last path segment.
    pub async fn fetch(
        &self,
        library: &MediaLibrary,
        tenant: &str,
        url: &str,
        media_type: MediaType,
        filename: Option<String>,
    ) -> Result<MediaRecord, MediaError> {
        let url = egress::check_url(url, self.allow_private)
            .map_err(|e| MediaError::Fetch(format!("the media URL is refused: {e}")))?;
        let filename = filename.or_else(|| {
            url.path_segments()
                .and_then(|mut segments| segments.next_back())
                .filter(|name| !name.is_empty())
                .map(percent_decode)
        });
        let response =
            self.client.get(url.clone()).send().await.map_err(|e| {
                MediaError::Fetch(format!("the media URL could not be fetched: {e}"))
            })?;
        if !response.status().is_success() {
            return Err(MediaError::Fetch(format!(
                "the media URL answered {}",
                response.status()
            )));
        }
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let new = NewMedia {
            tenant: tenant.to_owned(),
            mime,
            media_type: Some(media_type),
            filename,
            announced_size: response.content_length(),
            origin: MediaOrigin::Upload,
        };
        let body = response
            .bytes_stream()
            .map_err(std::io::Error::other)
            .boxed();
        library.put(new, body).await
    }
}

/// `%XX` escapes of a URL path segment decoded (invalid UTF-8 replaced).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_urls_are_decoded() {
        assert_eq!(percent_decode("faktur%20%C3%A9.pdf"), "faktur é.pdf");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("plain.png"), "plain.png");
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::SqliteStore::open(&dir.path().join("w.db")).unwrap());
        let keys = Arc::new(crate::seal::data_keys::DataKeys::new(
            store,
            Arc::new(crate::seal::Sealer::new(crate::seal::MasterKey::new(
                1, [1; 32],
            ))),
        ));
        let library = MediaLibrary::new(
            Arc::new(super::super::NoMediaStore),
            keys,
            Default::default(),
        );
        let fetcher = UrlFetcher::new(false);
        for url in [
            "http://127.0.0.1:9/x.png",
            "http://10.0.0.1/x.png",
            "file:///etc/passwd",
        ] {
            let refused = fetcher
                .fetch(&library, "t", url, MediaType::Image, None)
                .await;
            assert!(
                matches!(&refused, Err(MediaError::Fetch(m)) if m.contains("refused")),
                "{url}: {refused:?}"
            );
        }
    }
}

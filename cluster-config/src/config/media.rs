//! `[media]`: where uploaded and received media bytes are kept, and how large each kind
//! of media may be.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::check::{self, Invalid};

/// The `[media]` section (nodes): `backend` picks where media bytes live, its sub-table
/// (`[media.folder]` or `[media.s3]`) configures it, and `[media.limits]` caps each kind.
/// The other sub-table may stay in the file (so an environment variable can switch
/// `backend`) and is then ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// `folder` (default) or `s3`.
    #[serde(default)]
    pub backend: MediaBackend,
    /// The folder's settings, used when `backend = "folder"`.
    #[serde(default)]
    pub folder: MediaFolderSettings,
    /// The object store's settings, used when `backend = "s3"`.
    #[serde(default)]
    pub s3: MediaS3Settings,
    /// The largest file of each kind.
    #[serde(default)]
    pub limits: MediaLimits,
    /// Whether media URLs (`"media": {"url"}` of a send) may point at loopback and
    /// private addresses (default `false`: the SSRF rule of webhooks).
    #[serde(default)]
    pub allow_private_urls: bool,
}

/// Where media bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// A folder on this machine: a standalone process, or the nodes of one machine
    /// sharing it (like they share the SQLite file).
    #[default]
    Folder,
    /// An S3-compatible object store: a cluster of several machines, where any node must
    /// read what another stored.
    S3,
}

/// `[media.folder]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaFolderSettings {
    /// The folder (default `wafleet-data/media`, beside the default SQLite file); created
    /// if missing, readable by this user only.
    #[serde(default = "default_folder_path")]
    pub path: PathBuf,
}

impl Default for MediaFolderSettings {
    fn default() -> Self {
        MediaFolderSettings {
            path: default_folder_path(),
        }
    }
}

/// `[media.s3]`: any S3-compatible server (AWS S3, MinIO, Garage, Ceph RGW, R2...).
/// Credentials left out here come from the usual `AWS_*` variables, then the instance's
/// role (web identity, container or instance metadata). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaS3Settings {
    /// The bucket (required with `backend = "s3"`); it must exist.
    #[serde(default)]
    pub bucket: String,
    /// The server's base URL, like `http://127.0.0.1:9000`; unset for AWS S3 itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region requests are signed for (default `us-east-1`, which most
    /// S3-compatible servers accept).
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`) rather than virtual-hosted ones
    /// (`bucket.endpoint/key`); default `false` (AWS's style). Most self-hosted servers
    /// need `true`.
    #[serde(default)]
    pub path_style: bool,
    /// What every object key starts with (default `media/`), so the bucket can hold other
    /// things too.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The access key; best given as `WAFLEET__MEDIA__S3__ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Its secret; best given as `WAFLEET__MEDIA__S3__SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

impl Default for MediaS3Settings {
    fn default() -> Self {
        MediaS3Settings {
            bucket: String::new(),
            endpoint: None,
            region: default_region(),
            path_style: false,
            prefix: default_prefix(),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl fmt::Debug for MediaS3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaS3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// What a media file is sent as, for its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A photo (`image`).
    Image,
    /// A video (`video`).
    Video,
    /// Audio or a voice note (`audio`, `voice`).
    Audio,
    /// Any file sent as a document (`document`).
    Document,
    /// A static WebP sticker.
    Sticker,
    /// An animated WebP sticker.
    AnimatedSticker,
}

/// `[media.limits]`: the largest file of each kind, in bytes.
///
/// The defaults are the limits commonly published for WhatsApp's own apps, which a
/// linked device is: 16 MiB for images, videos and audio (the apps recompress larger
/// photos and videos; wafleet sends bytes as given), 2 GiB for documents (since 2022;
/// 100 MiB before, and 100 MB on the Business Cloud API), 100 KiB for a static sticker
/// and 500 KiB for an animated one. The Business Cloud API documents stricter ones for
/// images (5 MB); lower a limit here to match a stricter peer. An upload is capped at
/// the limit of the type it is uploaded as (given, or guessed from its MIME type), and
/// each send checks the limit of the type it is sent as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaLimits {
    /// Images (default 16 MiB).
    #[serde(default = "default_16_mib")]
    pub image_bytes: u64,
    /// Videos (default 16 MiB).
    #[serde(default = "default_16_mib")]
    pub video_bytes: u64,
    /// Audio and voice notes (default 16 MiB).
    #[serde(default = "default_16_mib")]
    pub audio_bytes: u64,
    /// Documents (default 2 GiB).
    #[serde(default = "default_document_bytes")]
    pub document_bytes: u64,
    /// Static stickers (default 100 KiB).
    #[serde(default = "default_sticker_bytes")]
    pub sticker_bytes: u64,
    /// Animated stickers (default 500 KiB).
    #[serde(default = "default_animated_sticker_bytes")]
    pub animated_sticker_bytes: u64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            image_bytes: default_16_mib(),
            video_bytes: default_16_mib(),
            audio_bytes: default_16_mib(),
            document_bytes: default_document_bytes(),
            sticker_bytes: default_sticker_bytes(),
            animated_sticker_bytes: default_animated_sticker_bytes(),
        }
    }
}

impl MediaLimits {
    /// The largest file of `kind`.
    pub fn of(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Image => self.image_bytes,
            MediaKind::Video => self.video_bytes,
            MediaKind::Audio => self.audio_bytes,
            MediaKind::Document => self.document_bytes,
            MediaKind::Sticker => self.sticker_bytes,
            MediaKind::AnimatedSticker => self.animated_sticker_bytes,
        }
    }

    /// The cap on an upload: the largest of the limits.
    pub fn upload(&self) -> u64 {
        [
            self.image_bytes,
            self.video_bytes,
            self.audio_bytes,
            self.document_bytes,
            self.sticker_bytes,
            self.animated_sticker_bytes,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    fn check(&self) -> Result<(), Invalid> {
        // 1 KiB to 4 GiB: a smaller cap refuses every real file, and 4 GiB is above any
        // limit WhatsApp has had.
        const MIN: u64 = 1 << 10;
        const MAX: u64 = 4 << 30;
        check::within("media.limits.image_bytes", self.image_bytes, MIN, MAX)?;
        check::within("media.limits.video_bytes", self.video_bytes, MIN, MAX)?;
        check::within("media.limits.audio_bytes", self.audio_bytes, MIN, MAX)?;
        check::within("media.limits.document_bytes", self.document_bytes, MIN, MAX)?;
        check::within("media.limits.sticker_bytes", self.sticker_bytes, MIN, MAX)?;
        check::within(
            "media.limits.animated_sticker_bytes",
            self.animated_sticker_bytes,
            MIN,
            MAX,
        )
    }
}

impl MediaSettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        self.limits.check()?;
        match self.backend {
            MediaBackend::Folder => {
                if self.folder.path.as_os_str().is_empty() {
                    return Err(Invalid::new("media.folder.path", "must not be empty"));
                }
                Ok(())
            }
            MediaBackend::S3 => self.s3.check(),
        }
    }
}

impl MediaS3Settings {
    fn check(&self) -> Result<(), Invalid> {
        // S3's bucket naming rule, loosely: 3 to 63 of lowercase letters, digits, `.`, `-`.
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(Invalid::new(
                "media.s3.bucket",
                format!(
                    "`{}` is not a bucket name: 3 to 63 lowercase letters, digits, `.` and `-` \
                     (required with backend = \"s3\")",
                    self.bucket
                ),
            ));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(Invalid::new(
                "media.s3.endpoint",
                format!("`{endpoint}` is not a URL: expected http://host:port or https://host"),
            ));
        }
        if self.region.is_empty() {
            return Err(Invalid::new("media.s3.region", "must not be empty"));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Invalid::new(
                "media.s3.secret_access_key",
                "access_key_id and secret_access_key go together: set both or neither",
            ));
        }
        Ok(())
    }
}

fn default_folder_path() -> PathBuf {
    PathBuf::from("wafleet-data/media")
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_prefix() -> String {
    "media/".into()
}

fn default_16_mib() -> u64 {
    16 << 20
}

fn default_document_bytes() -> u64 {
    2 << 30
}

fn default_sticker_bytes() -> u64 {
    100 << 10
}

fn default_animated_sticker_bytes() -> u64 {
    500 << 10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str) -> MediaSettings {
        MediaSettings {
            backend: MediaBackend::S3,
            s3: MediaS3Settings {
                bucket: bucket.into(),
                ..MediaS3Settings::default()
            },
            ..MediaSettings::default()
        }
    }

    #[test]
    fn the_defaults_check_and_an_upload_may_be_as_large_as_a_document() {
        let settings = MediaSettings::default();
        assert_eq!(settings.check(), Ok(()));
        assert_eq!(settings.limits.upload(), 2 << 30);
        assert_eq!(settings.limits.of(MediaKind::Image), 16 << 20);
        assert_eq!(settings.limits.of(MediaKind::Sticker), 100 << 10);
        assert_eq!(settings.limits.of(MediaKind::AnimatedSticker), 500 << 10);
    }

    #[test]
    fn the_upload_cap_follows_the_largest_limit() {
        let limits = MediaLimits {
            document_bytes: 100 << 20,
            video_bytes: 200 << 20,
            ..MediaLimits::default()
        };
        assert_eq!(limits.upload(), 200 << 20);
    }

    #[test]
    fn s3_needs_a_bucket_and_both_halves_of_a_key() {
        assert_eq!(s3("").check().unwrap_err().key, "media.s3.bucket");
        assert_eq!(
            s3("Media_Bucket").check().unwrap_err().key,
            "media.s3.bucket"
        );
        assert_eq!(s3("wafleet-media").check(), Ok(()));
        let mut half = s3("wafleet-media");
        half.s3.access_key_id = Some("AKIA".into());
        assert_eq!(half.check().unwrap_err().key, "media.s3.secret_access_key");
        let mut bad_endpoint = s3("wafleet-media");
        bad_endpoint.s3.endpoint = Some("127.0.0.1:9000".into());
        assert_eq!(bad_endpoint.check().unwrap_err().key, "media.s3.endpoint");
    }

    #[test]
    fn limits_out_of_range_name_their_key() {
        let mut settings = MediaSettings::default();
        settings.limits.sticker_bytes = 10;
        assert_eq!(
            settings.check().unwrap_err().key,
            "media.limits.sticker_bytes"
        );
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let mut settings = s3("wafleet-media");
        settings.s3.access_key_id = Some("AKIAEXAMPLE".into());
        settings.s3.secret_access_key = Some("s3cret-value".into());
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("AKIAEXAMPLE"), "{shown}");
    }
}

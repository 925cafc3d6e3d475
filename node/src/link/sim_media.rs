//! The simulated link's media: a message's file uploaded to the simulator's media
//! servers before its frame, and an inbound message's file downloaded into the media
//! library before the message is reported (see `sim`).

use tracing::warn;
use wafleet_protocol::sim;

use super::{LinkContext, SendFailure, SimDialer};
use crate::content::MediaPart;
use crate::media::{MediaError, MediaOrigin, MediaType, NewMedia};

/// Uploads `media`'s file to the simulator's media servers: the frame's `MediaInfo`.
pub(super) async fn upload(
    ctx: &LinkContext,
    dialer: &dyn SimDialer,
    media: &MediaPart,
) -> Result<sim::MediaInfo, SendFailure> {
    let gone = |error: MediaError| match error {
        MediaError::Storage(reason) => SendFailure::Transient(reason),
        other => SendFailure::Permanent(format!("the media file cannot be read: {other}")),
    };
    let record = ctx.media.record(&media.id).await.map_err(gone)?;
    let bytes = ctx.media.bytes(&record).await.map_err(gone)?;
    let blob = dialer
        .upload_media(&ctx.device_id, &record.mime, bytes)
        .await
        .map_err(|e| SendFailure::Transient(format!("media upload failed: {e}")))?;
    if blob.sha256 != record.sha256 || blob.size != record.size {
        // The stored bytes did not open to the file recorded.
        return Err(SendFailure::Permanent(
            "the media file's bytes do not match its record".into(),
        ));
    }
    Ok(sim::MediaInfo {
        r#type: media.media_type.as_str().to_owned(),
        mime: record.mime,
        handle: blob.handle,
        size: blob.size,
        sha256: blob.sha256,
        filename: media.filename.clone(),
    })
}

/// Downloads an inbound message's file into the media library: its part of the
/// message, or `None` when it can never be stored (too large, a bad MIME type: the
/// message is relayed without it). `Err`: not now (retry on the next delivery).
pub(super) async fn receive(
    ctx: &LinkContext,
    dialer: &dyn SimDialer,
    message_id: &str,
    info: sim::MediaInfo,
) -> Result<Option<MediaPart>, String> {
    let media_type = MediaType::parse(&info.r#type).unwrap_or(MediaType::Document);
    let body = dialer
        .download_media(&ctx.device_id, &info.handle)
        .await
        .map_err(|e| format!("download failed: {e}"))?;
    let new = NewMedia {
        tenant: ctx.tenant.clone(),
        mime: info.mime,
        media_type: Some(media_type),
        filename: info.filename,
        announced_size: Some(info.size),
        origin: MediaOrigin::Received {
            device_id: ctx.device_id.clone(),
            message_id: message_id.to_owned(),
        },
    };
    let record = match ctx.media.put(new, body).await {
        Ok(record) => record,
        Err(error @ (MediaError::TooLarge { .. } | MediaError::Invalid(_))) => {
            warn!(device_id = %ctx.device_id, message_id, %error, "inbound media refused; the message is relayed without it");
            return Ok(None);
        }
        Err(error) => return Err(error.to_string()),
    };
    if record.sha256 != info.sha256 {
        let _ = ctx.media.delete(&record.id).await;
        return Err("the downloaded bytes do not match the message's SHA-256".into());
    }
    Ok(Some(MediaPart::of(&record, media_type)))
}

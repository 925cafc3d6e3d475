//! The QR code of a pairing device: PNG (default), SVG, or the raw code as JSON.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use qrcode::QrCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use wafleet_node::api::{DeviceCommand, Empty};

use crate::AppState;
use crate::dto::{RawQr, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::validate;

/// Query of `GET /v1/devices/{id}/qr`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrQuery {
    /// png (default), svg or raw.
    pub format: Option<String>,
}

/// Pixels per QR module in the PNG.
const MODULE_PX: usize = 8;
/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;

#[utoipa::path(get, path = "/v1/devices/{id}/qr", tag = "devices",
    params(("id" = String, Path), ("format" = Option<String>, Query, description = "png (default), svg or raw",
        pattern = "^(png|svg|raw)$")),
    responses((status = 200, description = "The QR code: a PNG (default), an SVG (format=svg), or JSON (format=raw)",
            content((RawQr = "application/json"), ([u8] = "image/png"), (String = "image/svg+xml"))),
        (status = 404, body = ErrorBody), (status = 409, description = "not in SCAN_QR", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn qr(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<QrQuery>,
) -> Result<Response, ApiError> {
    validate::device_id(&id)?;
    let format = query.format.as_deref().unwrap_or("png");
    if !matches!(format, "png" | "svg" | "raw") {
        return Err(ApiError::invalid(
            "invalid_format",
            format!("unknown format {format:?}; use png, svg or raw"),
        ));
    }
    let command = DeviceCommand::Qr(Empty {});
    let qr = state.devices.execute(&id, command).await?.into_qr()?;
    match format {
        "raw" => Ok(Json(RawQr {
            code: qr.code,
            expires_at: rfc3339(qr.expires_at_ms),
        })
        .into_response()),
        "svg" => {
            let svg = encode(&qr.code)?
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(256, 256)
                .build();
            Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
        }
        _ => {
            let png = png(&encode(&qr.code)?)?;
            Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
    }
}

fn encode(code: &str) -> Result<QrCode, ApiError> {
    QrCode::new(code.as_bytes()).map_err(|e| ApiError::Internal(format!("qr encoding: {e}")))
}

/// Renders the code as an 8-bit grayscale PNG.
pub fn png(code: &QrCode) -> Result<Vec<u8>, ApiError> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * MODULE_PX;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            pixels[y * side + mx * MODULE_PX..y * side + (mx + 1) * MODULE_PX].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&pixels))
        .map_err(|e| ApiError::Internal(format!("png encoding: {e}")))?;
    Ok(out)
}

/// The routes of this file, each with its OpenAPI path (one declaration: the handler's
/// `#[utoipa::path]`).
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(qr))
}

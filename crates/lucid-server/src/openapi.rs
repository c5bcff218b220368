//! The OpenAPI document, generated from the route and type definitions.

use axum::Json;
use utoipa::OpenApi;

use crate::routes::{chats, files, health, integrations, sessions, sign_in, status};

#[derive(OpenApi)]
#[openapi(
    info(title = "Lucid AI Engine", version = "1.0.0", description = "Lucid's headless API (wire-compatible with the original Lucid AI engine). WebSocket: /api/v1/ws."),
    paths(
        health::root, health::health,
        sessions::create, sessions::list, sessions::get_one, sessions::delete,
        sessions::follow_up,
        chats::list, chats::get_one, chats::rename, chats::delete,
        files::list, files::read,
        integrations::save, integrations::list, integrations::delete, integrations::repos,
        integrations::branches, integrations::create_pr,
        status::status,
        sign_in::options, sign_in::start, sign_in::callback, sign_in::refresh, sign_in::sign_out,
    ),
    modifiers(&BearerAuth, &OperationIds),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Operation ids from method and path (`get_api_v1_chats_chat_id`): the handlers' function
/// names repeat across modules, and generated clients need unique ids.
struct OperationIds;

impl utoipa::Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let slug: String = path
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
                .split('_')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            let slug = if slug.is_empty() {
                "root".to_string()
            } else {
                slug
            };
            for (method, op) in [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("put", item.put.as_mut()),
                ("patch", item.patch.as_mut()),
                ("delete", item.delete.as_mut()),
            ] {
                if let Some(op) = op {
                    op.operation_id = Some(format!("{method}_{slug}"));
                }
            }
        }
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

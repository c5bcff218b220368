//! The OpenAPI document, generated from the route and type definitions.

use axum::Json;
use utoipa::OpenApi;

use crate::routes::{chats, files, health, integrations, sessions};

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
    ),
    modifiers(&BearerAuth),
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

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

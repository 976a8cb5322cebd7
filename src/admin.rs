//! The admin REST API, behind an API key (`admin.api_key`, header `X-Api-Key`):
//!
//! - `GET    /admin/rooms`                                   rooms with participants and tracks
//! - `DELETE /admin/rooms/{room}`                            close a room (everyone is disconnected)
//! - `DELETE /admin/rooms/{room}/participants/{participant}` kick one participant
//!
//! A missing or wrong key gets 401 and changes nothing. With no key configured the API
//! does not exist (404), so a forgotten setting cannot leave it open.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use plaza_protocol::auth::secrets_equal;
use plaza_protocol::{ParticipantId, RoomId};

use crate::room::{CloseRoom, Describe, Kick, RoomSnapshot};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/rooms", web::get().to(list_rooms))
            .route("/rooms/{room}", web::delete().to(close_room))
            .route(
                "/rooms/{room}/participants/{participant}",
                web::delete().to(kick),
            ),
    );
}

#[derive(Serialize)]
struct RoomView {
    room: RoomId,
    #[serde(flatten)]
    snapshot: RoomSnapshot,
}

/// The response refusing the request, unless it carries the right key.
fn refusal(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let key = &state.config.admin.api_key;
    if key.is_empty() {
        return Some(HttpResponse::NotFound().finish());
    }
    let given = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if secrets_equal(given, key) {
        None
    } else {
        state.metrics.count_error("admin_unauthorized");
        Some(
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "ApiKey header=\"X-Api-Key\""))
                .json(serde_json::json!({"error": "unauthorized"})),
        )
    }
}

async fn list_rooms(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    let mut rooms = Vec::new();
    for (id, addr) in state.registry.rooms() {
        // A room that stops while we ask is simply not listed.
        if let Ok(snapshot) = addr.send(Describe).await {
            rooms.push(RoomView { room: id, snapshot });
        }
    }
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    HttpResponse::Ok().json(rooms)
}

async fn close_room(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    let room = match RoomId::parse(&path, state.config.limits.max_room_name_len) {
        Ok(r) => r,
        Err(_) => return not_found("no such room"),
    };
    match state.registry.room(&room) {
        Some(addr) => {
            addr.do_send(CloseRoom {
                reason: "the room was closed by an operator".into(),
            });
            HttpResponse::Accepted().json(serde_json::json!({"closing": room}))
        }
        None => not_found("no such room"),
    }
}

async fn kick(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(r) = refusal(&req, &state) {
        return r;
    }
    let (room, participant) = path.into_inner();
    let Some(addr) = RoomId::parse(&room, state.config.limits.max_room_name_len)
        .ok()
        .and_then(|r| state.registry.room(&r))
    else {
        return not_found("no such room");
    };
    let kicked = addr
        .send(Kick {
            participant_id: ParticipantId::from_client(&participant),
            reason: "removed by an operator".into(),
        })
        .await
        .unwrap_or(false);
    if kicked {
        HttpResponse::Accepted().json(serde_json::json!({"kicked": participant}))
    } else {
        not_found("no such participant in this room")
    }
}

fn not_found(what: &str) -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": what }))
}

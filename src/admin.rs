//! The admin REST API, behind an API key (`admin.api_key`, header `X-Api-Key`):
//!
//! - `GET    /admin/rooms`                                   rooms with participants and tracks
//! - `DELETE /admin/rooms/{room}[?closed_for_seconds=N]`     close a room (everyone is disconnected)
//! - `DELETE /admin/rooms/{room}/participants/{participant}[?ban_seconds=N]` kick one participant
//!
//! A kicked participant may not rejoin the room for `ban_seconds` (default
//! `admin.kick_ban`), and a closed room refuses every join for `closed_for_seconds`
//! (default `admin.room_closed_for`); 0 lifts nothing and keeps no one out (see
//! `crate::bans`).
//!
//! A missing or wrong key gets 401 and changes nothing. With no key configured the API
//! does not exist (404), so a forgotten setting cannot leave it open.

use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use plaza_protocol::auth::secrets_equal;
use plaza_protocol::{ParticipantId, RoomId};

use crate::bans::MAX_BAN;
use crate::room::{CloseRoom, Describe, Kick, RoomSnapshot};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseQuery {
    closed_for_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickQuery {
    ban_seconds: Option<u64>,
}

/// The query's duration (else `default`), or why it is refused (a 400).
fn duration_from<Q: for<'de> Deserialize<'de>>(
    req: &HttpRequest,
    seconds: impl FnOnce(Q) -> Option<u64>,
    default: Duration,
) -> Result<Duration, String> {
    let query = web::Query::<Q>::from_query(req.query_string()).map_err(|e| e.to_string())?;
    match seconds(query.into_inner()) {
        None => Ok(default),
        Some(s) if Duration::from_secs(s) <= MAX_BAN => Ok(Duration::from_secs(s)),
        Some(s) => Err(format!(
            "{s} s is longer than the limit ({} s)",
            MAX_BAN.as_secs()
        )),
    }
}

fn bad_request(why: String) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({ "error": why }))
}

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
    let closed_for = match duration_from(
        &req,
        |q: CloseQuery| q.closed_for_seconds,
        state.config.admin.room_closed_for,
    ) {
        Ok(d) => d,
        Err(why) => return bad_request(why),
    };
    let room = match RoomId::parse(&path, state.config.limits.max_room_name_len) {
        Ok(r) => r,
        Err(_) => return not_found("no such room"),
    };
    match state.registry.room(&room) {
        Some(addr) => {
            // Closed before anyone is told, so nobody told can get back in.
            state.bans.close(&room, closed_for, Instant::now());
            addr.do_send(CloseRoom {
                reason: "the room was closed by an operator".into(),
            });
            HttpResponse::Accepted().json(serde_json::json!({
                "closing": room,
                "closed_for_seconds": closed_for.as_secs(),
            }))
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
    let ban = match duration_from(
        &req,
        |q: KickQuery| q.ban_seconds,
        state.config.admin.kick_ban,
    ) {
        Ok(d) => d,
        Err(why) => return bad_request(why),
    };
    let (room, participant) = path.into_inner();
    let Some((room_id, addr)) = RoomId::parse(&room, state.config.limits.max_room_name_len)
        .ok()
        .and_then(|r| state.registry.room(&r).map(|a| (r, a)))
    else {
        return not_found("no such room");
    };
    let participant_id = ParticipantId::from_client(&participant);
    // Banned before the kick is delivered, so an instant reconnect is refused too.
    let banned = state
        .registry
        .connection(&participant_id)
        .filter(|c| c.room.as_ref() == Some(&room_id))
        .and_then(|c| c.rejoiner);
    if let Some(who) = &banned {
        state.bans.kick(&room_id, who.clone(), ban, Instant::now());
    }
    let kicked = addr
        .send(Kick {
            participant_id,
            reason: "removed by an operator".into(),
        })
        .await
        .unwrap_or(false);
    if kicked {
        HttpResponse::Accepted().json(serde_json::json!({
            "kicked": participant,
            "ban_seconds": ban.as_secs(),
        }))
    } else {
        if let Some(who) = &banned {
            state.bans.forgive(&room_id, who);
        }
        not_found("no such participant in this room")
    }
}

fn not_found(what: &str) -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": what }))
}

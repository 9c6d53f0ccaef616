//! Chat history over REST (API.md "Real-time"): the same archive the
//! WebSocket `history` frame reads, on the room's shard.

use serde::Serialize;
use utoipa::ToSchema;

use rayltics_commerce::DomainError;
use rayltics_net::Response;

use super::openapi::{PROBLEM_JSON, Problem};
use super::{ApiResult, Ctx, input};
use crate::realtime::protocol::{self, MessageView};
use crate::realtime::rooms::{self, ChatOp, ChatReply};
use crate::realtime::session;

/// A page of a room's messages, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatHistory)]
pub(super) struct HistoryView<'a> {
    /// Room name.
    room: &'a str,
    /// Up to `limit` messages with seq below `before`, oldest first.
    messages: Vec<MessageView<'a>>,
}

/// A room's messages.
///
/// The latest `limit` messages with a seq below `before` (all when absent),
/// oldest first. `order-{id}` rooms are readable by the order's owner and
/// admins only.
#[utoipa::path(
    get,
    path = "/api/v1/chat/rooms/{room}/messages",
    operation_id = "room_messages",
    tag = "chat",
    security(("bearerAuth" = [])),
    params(
        ("room" = String, Path, description = "Room name", pattern = "^[a-z0-9_-]{1,64}$"),
        ("before" = Option<u64>, Query, description = "Only messages with a smaller seq", minimum = 1),
        ("limit" = Option<u32>, Query, description = "How many; default 20", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "The messages", body = HistoryView<'static>),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`forbidden`: an order's room, and not its owner or an admin", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: an invalid room name or query parameter", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn messages(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let room = ctx.param("room");
    if !protocol::valid_room(room) {
        return Err(DomainError::invalid("room: must match [a-z0-9_-]{1,64}").into());
    }
    let q = input::query(ctx.req, &["before", "limit"])?;
    let limit = input::limit(&q)?;
    let before = match input::get(&q, "before") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(DomainError::invalid("before: must be a positive integer").into()),
        },
    };
    session::authorize(ctx.state, &caller, room)
        .await
        .map_err(|e| match e.code {
            "forbidden" => DomainError::Forbidden("an order's room is its owner's"),
            _ => DomainError::Unavailable(e.message),
        })?;
    let op = ChatOp::History {
        room: room.to_owned(),
        before,
        limit,
    };
    let shard = ctx.router.owner_of(room.as_bytes());
    match rooms::call(ctx.state, shard, op).await? {
        ChatReply::History(messages) => Ok(Response::json(
            200,
            &HistoryView {
                room,
                messages: messages.iter().map(MessageView::from).collect(),
            },
        )),
        _ => Err(DomainError::Unavailable("internal: unexpected reply".into()).into()),
    }
}

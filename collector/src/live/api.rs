//! `POST /v1/live/token` (a live token for the tenant a read credential acts on) and
//! `GET /v1/live` (the stream: WebSocket on an upgrade request, Server-Sent Events with
//! `Accept: text/event-stream`, else 406), and the loop every connection runs: `hello`, then its
//! pending update at most `MESSAGES_PER_SECOND` times a second, keep-alives when idle, dropped
//! when a send stalls for `SEND_TIMEOUT`, closed on shutdown.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};
use utoipa::{IntoParams, ToSchema};

use super::message::{Message, Recent};
use super::{Registration, KEEPALIVE_INTERVAL, MIN_INTERVAL, SEND_TIMEOUT};
use crate::api_error::{ApiError, ReadErrors};
use crate::auth::{Scope, Tenant};
use crate::read_api::{known_params, read_params};
use crate::state::SharedState;

/// The parameters `GET /v1/live` reads.
pub const LIVE_PARAMS: &[&str] = &["token", "tenant_id"];
/// The parameters `POST /v1/live/token` reads.
pub const TOKEN_PARAMS: &[&str] = &["tenant_id"];

/// The largest message a client may send on the WebSocket (it has nothing to say; a close
/// frame or a pong fits).
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// How long a closing WebSocket waits to send its close frame.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The answer of `POST /v1/live/token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveToken {
    /// Opens `GET /v1/live?token=` streams of `tenant_id` until `expires_at`; a stream opened
    /// in time stays open.
    pub token: String,
    pub tenant_id: String,
    pub expires_at: DateTime<Utc>,
}

/// The query string of `POST /v1/live/token`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenParams {
    /// The tenant the token is for: required with a platform key; with a tenant key, its own
    /// tenant (another is a 403).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub tenant_id: Option<String>,
}

/// A live token: 60 seconds to open `GET /v1/live?token=` streams of the tenant (for browsers,
/// whose `EventSource` and `WebSocket` cannot send an `Authorization` header). Scope `read`.
#[utoipa::path(
    post,
    path = "/v1/live/token",
    tag = "live",
    security(("bearer" = [])),
    params(TokenParams),
    responses(
        (status = 201, description = "The token.", body = LiveToken),
        ReadErrors,
    )
)]
pub async fn token(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    read_params(params, TOKEN_PARAMS)?;
    let (token, grant) =
        st.live
            .signer()
            .issue(&tenant.id, &tenant.principal.credential_id, Utc::now());
    let body = LiveToken {
        token,
        tenant_id: grant.tenant.clone(),
        expires_at: grant.expires_at(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// The query string of `GET /v1/live`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveParams {
    /// A live token (`POST /v1/live/token`), instead of an `Authorization` header. Never an API
    /// key.
    pub token: Option<String>,
    /// The tenant to follow: required with a platform key; otherwise the credential's or the
    /// token's tenant (another is a 403).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub tenant_id: Option<String>,
}

/// Live updates of a tenant: `hello`, then an `update` (at most 10 a second) with everything
/// committed since the previous message, `resync` when updates were dropped. WebSocket on an
/// upgrade request (one JSON text frame per message, pings every 15 s); Server-Sent Events with
/// `Accept: text/event-stream` (`event: <type>`, `data: <json>`, a `: keep-alive` comment every
/// 15 s). Scope `read`, or a live token in `?token=`.
#[utoipa::path(
    get,
    path = "/v1/live",
    tag = "live",
    security(("bearer" = [])),
    params(LiveParams),
    responses(
        (status = 101, description = "Switching to WebSocket."),
        (status = 200, description = "The Server-Sent Events stream.",
            body = String, content_type = "text/event-stream"),
        (status = 406, description = "Neither a WebSocket upgrade nor `Accept: text/event-stream`.",
            body = crate::api_error::ErrorBody),
        (status = 429, description = "The tenant or the collector has the most live connections \
            it allows open; retry after `Retry-After`.", body = crate::api_error::ErrorBody),
        ReadErrors,
    )
)]
pub async fn live(
    State(st): State<SharedState>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    tenant: Result<Tenant, ApiError>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::unprocessable(
            "invalid_query",
            format!("query: could not be read ({})", e.body_text()),
        )
    })?;
    known_params(&params, LIVE_PARAMS)?;
    let tenant_id = match params.get("token") {
        Some(token) => {
            let grant = st.live.signer().verify(token, Utc::now())?;
            if let Some(asked) = params.get("tenant_id").filter(|a| **a != grant.tenant) {
                return Err(ApiError::forbidden(
                    "tenant_forbidden",
                    format!(
                        "tenant_id: this live token is for tenant `{}` and may not follow \
                         tenant `{asked}`",
                        grant.tenant
                    ),
                ));
            }
            grant.tenant
        }
        None => {
            let tenant = tenant?;
            tenant.principal.require(Scope::Read)?;
            tenant.id
        }
    };
    match ws {
        Ok(upgrade) => {
            let reg = st.live.register(&tenant_id)?;
            let closing = st.live.closing();
            Ok(upgrade
                .max_message_size(MAX_CLIENT_MESSAGE)
                .max_frame_size(MAX_CLIENT_MESSAGE)
                .on_upgrade(move |socket| serve(Out::Ws(Box::new(socket)), reg, closing)))
        }
        Err(rejection) if asks_upgrade(&headers) => Err(ApiError::bad_request(
            "invalid_upgrade",
            format!("WebSocket upgrade: {}", rejection.body_text()),
        )),
        Err(_) if accepts_event_stream(&headers) => {
            let reg = st.live.register(&tenant_id)?;
            Ok(event_stream(reg, st.live.closing()))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "GET /v1/live streams as a WebSocket (send an upgrade request) or as Server-Sent \
             Events (send `Accept: text/event-stream`)",
        )),
    }
}

fn asks_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.eq_ignore_ascii_case("websocket"))
    })
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|m| {
                m.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
            })
        })
    })
}

/// The SSE response: its body is fed by the connection's task through a one-message channel,
/// so a client that stops reading makes the task's send wait, and time out.
fn event_stream(reg: Registration, closing: watch::Receiver<bool>) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    tokio::spawn(serve(Out::Sse(tx), reg, closing));
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) would otherwise buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Where a connection's messages go.
enum Out {
    // Boxed: a WebSocket is a few hundred bytes, the SSE sender a pointer.
    Ws(Box<WebSocket>),
    Sse(mpsc::Sender<Bytes>),
}

/// Why a connection ends.
enum End {
    /// The client went away.
    Gone,
    /// A send did not complete within `SEND_TIMEOUT`.
    Stalled,
}

impl Out {
    async fn send(&mut self, m: &Message<'_>) -> Result<(), End> {
        let json = m.to_json();
        match self {
            Out::Ws(ws) => {
                Self::finish(timeout(SEND_TIMEOUT, ws.send(WsMessage::Text(json.into()))).await)
            }
            Out::Sse(tx) => {
                let frame = format!("event: {}\ndata: {json}\n\n", m.kind());
                Self::finish(timeout(SEND_TIMEOUT, tx.send(Bytes::from(frame))).await)
            }
        }
    }

    async fn keep_alive(&mut self) -> Result<(), End> {
        match self {
            Out::Ws(ws) => {
                Self::finish(timeout(SEND_TIMEOUT, ws.send(WsMessage::Ping(Bytes::new()))).await)
            }
            Out::Sse(tx) => Self::finish(
                timeout(
                    SEND_TIMEOUT,
                    tx.send(Bytes::from_static(b": keep-alive\n\n")),
                )
                .await,
            ),
        }
    }

    fn finish<E>(r: Result<Result<(), E>, tokio::time::error::Elapsed>) -> Result<(), End> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Stalled),
        }
    }

    /// Resolves when the client has gone (closed, reset); what it sends is read and ignored.
    /// Cancel-safe.
    async fn gone(&mut self) {
        match self {
            Out::Ws(ws) => loop {
                match ws.recv().await {
                    None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            },
            Out::Sse(tx) => tx.closed().await,
        }
    }

    /// Close on shutdown: a WebSocket close frame (1001, going away); the SSE body just ends.
    async fn close(self) {
        if let Out::Ws(mut ws) = self {
            let frame = CloseFrame {
                code: axum::extract::ws::close_code::AWAY,
                reason: "the collector is shutting down".into(),
            };
            let _ = timeout(CLOSE_TIMEOUT, ws.send(WsMessage::Close(Some(frame)))).await;
        }
    }
}

/// One connection, from `hello` to its end.
async fn serve(mut out: Out, reg: Registration, mut closing: watch::Receiver<bool>) {
    let tenant = reg.tenant.as_str();
    let hello = Message::Hello {
        tenant_id: tenant,
        server_time: Utc::now(),
    };
    let end = match out.send(&hello).await {
        Err(e) => e,
        Ok(()) => {
            let mut last = Instant::now();
            loop {
                let idle = tokio::time::sleep_until(last + KEEPALIVE_INTERVAL);
                let sent = tokio::select! {
                    biased;
                    () = closed(&mut closing) => {
                        out.close().await;
                        tracing::debug!("live connection of `{tenant}` closed for shutdown");
                        return;
                    }
                    () = out.gone() => Err(End::Gone),
                    () = reg.slot.ready() => {
                        // At most one message per `MIN_INTERVAL`: what arrives meanwhile is
                        // folded into the same update.
                        tokio::time::sleep_until(last + MIN_INTERVAL).await;
                        send_pending(&mut out, &reg).await
                    }
                    () = idle => out.keep_alive().await.map(|()| true),
                };
                match sent {
                    Err(e) => break e,
                    Ok(true) => last = Instant::now(),
                    // A ring whose update went out with the previous message.
                    Ok(false) => {}
                }
            }
        }
    };
    match end {
        End::Gone => tracing::debug!("live client of `{tenant}` went away"),
        End::Stalled => {
            reg.hub.dropped_slow();
            tracing::info!(
                "live client of `{tenant}` dropped: a send did not complete within {} s",
                SEND_TIMEOUT.as_secs()
            );
        }
    }
}

/// Resolves once the hub is closing (or gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Send what is pending: `resync` if updates were lost, then the coalesced `update`. False when
/// nothing was pending.
async fn send_pending(out: &mut Out, reg: &Registration) -> Result<bool, End> {
    let p = reg.slot.take();
    if p.is_empty() {
        return Ok(false);
    }
    if p.resync {
        out.send(&Message::Resync { reason: "lagged" }).await?;
    }
    if p.commits > 0 {
        let update = Message::Update {
            tenant_id: &reg.tenant,
            at: Utc::now(),
            commits: p.commits,
            delta: &p.delta,
            recent: p.recent.iter().map(Recent::from).collect(),
            billing: None,
        };
        out.send(&update).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_accept_header_picks_event_streams() {
        assert!(accepts_event_stream(&headers(&[(
            "accept",
            "text/event-stream"
        )])));
        assert!(accepts_event_stream(&headers(&[(
            "accept",
            "application/json, Text/Event-Stream;q=0.9"
        )])));
        assert!(!accepts_event_stream(&headers(&[("accept", "*/*")])));
        assert!(!accepts_event_stream(&headers(&[])));
        assert!(asks_upgrade(&headers(&[("upgrade", "WebSocket")])));
        assert!(!asks_upgrade(&headers(&[("upgrade", "h2c")])));
    }
}

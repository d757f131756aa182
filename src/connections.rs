//! Client connections: the accept loop `app::run` serves the router with.
//!
//! Each connection is served by hyper, as HTTP/1.1 or, when the client opens with the h2c
//! preface, HTTP/2, under Berth's own timeouts (`ConnectionSettings`):
//!
//! - a request's head must be whole within `header_read_timeout` of the connection opening,
//!   or of its first byte when the connection sat idle after a response;
//! - its body must be whole within `body_read_timeout` of its head (`DeadlineBody`);
//! - a connection that sends nothing for `keep_alive_timeout` after a response is closed.
//!
//! A timeout only closes a connection with no request in flight, so it never cuts an answer.
//! The number of connections open at once is capped: one more is answered a short 503 in the
//! API's error shape and closed, instead of the process running out of open files.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::limits::{MAX_HEADER_BYTES, MAX_REQUEST_HEADERS};
use crate::config::{ConnectionSettings, Settings};
use crate::error::{ErrorBody, ErrorDetail};

/// Serves `app` on `listener` until `stop` turns true (or its sender goes away); then stops
/// accepting, asks every connection to finish the requests it has and close, and waits for
/// them. Dropping the future closes every connection at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ConnectionSettings,
    cap: usize,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder());
    let open = Arc::new(Semaphore::new(cap));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (finish_tx, finish_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut last_accept_error: Option<Instant> = None;
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        tokio::select! {
            () = turned_true(&mut stop) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(serve_connection(
                            builder.clone(),
                            stream,
                            peer,
                            app.clone(),
                            settings,
                            finish_rx.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        if last_refusal_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            last_refusal_log = Some(Instant::now());
                            tracing::warn!(max_connections = cap,
                                "refusing connections: max_connections are open");
                        }
                        // Past MAX_REFUSING refusals at once, a connection is closed unanswered.
                        if let Ok(permit) = refusing.clone().try_acquire_owned() {
                            tasks.spawn(refuse(stream, permit));
                        }
                    }
                },
                // The peer gave up before it was accepted: nothing to do.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of open files or memory: wait a little rather than spin.
                    if last_accept_error.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        last_accept_error = Some(Instant::now());
                        tracing::error!(error = %e, "accept error");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = finish_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

/// Raises this process's soft open-file limit to its hard limit, so that the connection cap,
/// not the kernel, decides when to refuse. Answers the limit now in force (None: unlimited or
/// unknown).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::info!(
                from = %show_limit(before.current),
                to = %show_limit(before.maximum),
                "raised the open-file limit to its hard limit"
            ),
            Err(e) => tracing::warn!(
                limit = %show_limit(before.current),
                error = %e,
                "cannot raise the open-file limit"
            ),
        }
    }
    getrlimit(Resource::Nofile).current
}

/// `max_connections`, lowered (with a warning) to what the open-file limit `files` holds
/// beside the database's connections, the webhook attempts and the files Berth keeps open.
pub fn connection_cap(settings: &Settings, files: Option<u64>) -> usize {
    let wanted = settings.connections.max_connections;
    let Some(files) = files else {
        return wanted;
    };
    let reserve = 64
        + u64::from(settings.database_max_connections)
        + u64::try_from(settings.delivery.max_in_flight).unwrap_or(u64::MAX);
    let fits = usize::try_from(files.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX);
    if wanted > fits {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = files,
            lowered_to = fits,
            "the open-file limit cannot hold max_connections; raise the hard limit \
             (LimitNOFILE= in a systemd unit, ulimit -Hn) to keep the setting"
        );
        fits
    } else {
        wanted
    }
}

/// The HTTP layer's own limits on a request head, well above the documented ones
/// (`api::limits`), so that a request over those reaches `check_request_size` and is answered
/// in the error shape. Only a head past these gets the protocol's bare refusal (HTTP/1.1: 431
/// without a body; HTTP/2: the stream refused).
const PROTOCOL_MAX_HEADERS: usize = 4 * MAX_REQUEST_HEADERS;
/// HTTP/2 counts each header as its name, its value and 32 bytes.
const PROTOCOL_MAX_HEADER_LIST: u32 = 4 * MAX_HEADER_BYTES as u32;
/// Connections answered 503 at once, past the cap; more are closed unanswered.
const MAX_REFUSING: usize = 64;
/// How long a refusal may take (writing the answer, reading what the client sent).
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// After a timeout, how long a connection gets to close cleanly (HTTP/2 sends GOAWAY) before
/// it is dropped. It has no request in flight, so nothing is lost either way.
const CLOSE_TIME: Duration = Duration::from_millis(250);
/// Repeated accept errors and refusals are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Berth's watchdog keeps the header timeout (hyper's would also run while idle).
        .header_read_timeout(None)
        .max_headers(PROTOCOL_MAX_HEADERS);
    builder
        .http2()
        .max_header_list_size(PROTOCOL_MAX_HEADER_LIST);
    builder
}

/// Completes when `flag` is true, or its sender is gone.
async fn turned_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn show_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".into(), |n| n.to_string())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves one connection until it closes, it times out, or the server stops (then its
/// requests finish first).
async fn serve_connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: ConnectionSettings,
    mut finish: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |req: Request<Incoming>| {
            let guard = activity.request_started();
            let mut req =
                req.map(|body| Body::new(DeadlineBody::new(body, timeouts.body_read_timeout)));
            // Rate limits key failed authentications by the client's address.
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = tower::ServiceExt::oneshot(app, req).await?;
                Ok::<_, Infallible>(response.map(|body| Answered {
                    inner: body,
                    _guard: guard,
                }))
            }
        }
    });
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    // Shortest of the timeouts: how often a connection busy with a request is looked at.
    let recheck = timeouts
        .header_read_timeout
        .min(timeouts.keep_alive_timeout)
        .min(timeouts.body_read_timeout);
    let mut closing = false;
    let mut drop_at: Option<Instant> = None;
    loop {
        let wake = drop_at
            .or_else(|| activity.deadline(&timeouts))
            .unwrap_or_else(|| Instant::now() + recheck);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = turned_true(&mut finish), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if drop_at.is_some_and(|at| now >= at) {
                    return;
                }
                if activity.deadline(&timeouts).is_some_and(|at| now >= at) {
                    tracing::debug!(%peer, "closing a slow or idle connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    drop_at = Some(now + CLOSE_TIME);
                }
            }
        }
    }
}

/// Answers a connection past the cap with a short 503 and closes it.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let body = serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            code: "unavailable".into(),
            message: "the server has too many open connections; retry after Retry-After \
                      seconds"
                .into(),
            field: None,
            errors: Vec::new(),
        },
    })
    .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        // Wait for the request's head first: an HTTP client may treat an answer that comes
        // before its request as a broken connection.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what else the client sends until it hangs up: closing with unread data would
        // reset the connection, and the client could lose the answer.
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// What a connection's watchdog needs to know: when it last went quiet, whether bytes came
/// since, and how many requests are in flight. Times are microseconds since `opened`.
struct Activity {
    opened: Instant,
    /// The end of the last answer (0: none yet).
    quiet_since: AtomicU64,
    /// The first byte read since the last answer, plus one (0: none).
    first_byte: AtomicU64,
    answered: AtomicBool,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            quiet_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            answered: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn at(&self, micros: u64) -> Instant {
        self.opened + Duration::from_micros(micros)
    }

    fn bytes_read(&self) {
        if self.first_byte.load(Ordering::Relaxed) == 0 {
            let now = self.micros() + 1;
            let _ = self
                .first_byte
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection times out, if nothing changes; None while a request is in
    /// flight (the body's deadline and the handler bound it then).
    fn deadline(&self, timeouts: &ConnectionSettings) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.answered.load(Ordering::Acquire) {
            return Some(self.opened + timeouts.header_read_timeout);
        }
        match self.first_byte.load(Ordering::Relaxed) {
            0 => Some(
                self.at(self.quiet_since.load(Ordering::Relaxed)) + timeouts.keep_alive_timeout,
            ),
            first => Some(self.at(first - 1) + timeouts.header_read_timeout),
        }
    }
}

/// One request in flight; dropped with its answer's body (or the request, if it never got
/// one).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.quiet_since.store(a.micros(), Ordering::Relaxed);
        a.first_byte.store(0, Ordering::Relaxed);
        a.answered.store(true, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection's socket, noting when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must arrive whole within a time of its head.
struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Instant,
    /// Made the first time the body is not ready (most bodies are there at once, or empty).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            timeout,
            deadline: Instant::now() + timeout,
            sleep: None,
        }
    }
}

/// The request body did not arrive within `body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimeout(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body, holding its request's place in flight until hyper is done with it.
struct Answered {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Answered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

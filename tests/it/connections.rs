//! Client connections: slow and idle clients are closed within the timeouts, a cap on open
//! connections refuses politely, `/healthz` answers while thousands of idle sockets are held,
//! and the header limits are the documented ones on HTTP/1.1 and HTTP/2 (h2c) alike.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp};
use crate::process::{Db, Server};

/// Raises this test process's soft open-file limit to its hard limit (the test holds
/// thousands of sockets, and an in-process server as many again).
fn raise_own_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Reads (and throws away) whatever the server sends until it closes the connection, and
/// answers how long that took from `since`. Panics when it is still open at `since + limit`.
async fn wait_closed(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
    what: &str,
) -> Duration {
    read_until_closed(stream, since, limit, what).await.0
}

/// Like [`wait_closed`], also answering what the server sent before it closed.
async fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
    what: &str,
) -> (Duration, String) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout_at((since + limit).into(), stream.read(&mut buf)).await {
            Err(_) => panic!("{what}: still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => {
                return (since.elapsed(), String::from_utf8_lossy(&got).into_owned());
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole HTTP/1.1 answer (head and a Content-Length body) from `stream`.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// A connection that sends nothing, one that sends half a header a byte at a time, one that
/// promises a body it never sends, one idle after an answer, and an HTTP/2 connection idle
/// after its preface: each is closed within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_slow_and_idle_clients_are_closed_within_the_timeouts() {
    const HEADER: Duration = Duration::from_secs(2);
    const BODY: Duration = Duration::from_secs(2);
    const IDLE: Duration = Duration::from_secs(1);
    // Time for the server to notice and the close to arrive on a busy machine.
    const SLACK: Duration = Duration::from_millis(1500);
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.connections.header_read_timeout = HEADER;
        s.connections.body_read_timeout = BODY;
        s.connections.keep_alive_timeout = IDLE;
    })
    .await;
    let addr = app.addr;

    let nothing = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let start = Instant::now();
        wait_closed(&mut s, start, HEADER + SLACK, "sent nothing").await
    };
    let half_header = async {
        let s = TcpStream::connect(addr).await.expect("connect");
        let (mut read, mut write) = s.into_split();
        let start = Instant::now();
        write
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        // Keeps sending, a byte every 200 ms: activity does not extend the deadline.
        let dribble = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if write.write_all(b"a").await.is_err() {
                    return;
                }
            }
        });
        let mut buf = vec![0u8; 4096];
        let took = loop {
            match tokio::time::timeout_at((start + HEADER + SLACK).into(), read.read(&mut buf))
                .await
            {
                Err(_) => panic!("half a header: still open after {:?}", HEADER + SLACK),
                Ok(Ok(0) | Err(_)) => break start.elapsed(),
                Ok(Ok(_)) => {}
            }
        };
        dribble.abort();
        took
    };
    let promised_body = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!(
                "POST /api/v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
                crate::helpers::ADMIN_TOKEN
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let start = Instant::now();
        let (took, answer) =
            read_until_closed(&mut s, start, BODY + SLACK, "promised a body").await;
        // Answered in the error shape: the body was late, not too large.
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("\"request_timeout\""),
            "promised a body: {answer}"
        );
        took
    };
    let idle_after_answer = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = read_answer(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let start = Instant::now();
        wait_closed(&mut s, start, IDLE + SLACK, "idle after an answer").await
    };
    let h2_idle = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let start = Instant::now();
        // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .expect("write");
        wait_closed(
            &mut s,
            start,
            HEADER + SLACK,
            "HTTP/2 idle after its preface",
        )
        .await
    };
    let (nothing, half_header, promised_body, idle_after_answer, h2_idle) = tokio::join!(
        nothing,
        half_header,
        promised_body,
        idle_after_answer,
        h2_idle
    );
    // Not closed early either: each waited for its own timeout.
    let early = Duration::from_millis(300);
    assert!(
        nothing >= HEADER - early,
        "sent nothing: closed after {nothing:?}"
    );
    assert!(
        half_header >= HEADER - early,
        "half a header: closed after {half_header:?}"
    );
    assert!(
        promised_body >= BODY - early,
        "promised a body: closed after {promised_body:?}"
    );
    assert!(
        idle_after_answer >= IDLE - early,
        "idle after an answer: closed after {idle_after_answer:?}"
    );
    assert!(
        h2_idle >= HEADER - early,
        "HTTP/2 idle: closed after {h2_idle:?}"
    );
    // The server goes on answering.
    let (status, _) = app.get(crate::helpers::ADMIN_TOKEN, "/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Over the cap on open connections, a new connection gets a short 503 in Berth's error
/// shape and is closed; once a connection closes, new ones are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_with_a_503() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.connections.max_connections = 5).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        // An answer proves the server took the connection; it then stays open, idle.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = read_answer(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(s);
    }
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    };
    let resp = fresh()
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("a refusal is an answer");
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        resp.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("connections")),
        "{body}"
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = fresh()
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .expect("answer");
        if resp.status() == 200 {
            break;
        }
        assert_eq!(resp.status(), 503);
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    app.stop().await;
}

/// The real binary started with a soft open-file limit of 1,024 raises it at start, and
/// `/healthz` answers while 2,000 idle sockets are held open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_healthz_answers_while_2000_idle_sockets_are_held() {
    const IDLE: usize = 2000;
    let own = raise_own_fd_limit();
    assert!(
        own >= 3 * IDLE as u64,
        "the test needs a hard open-file limit of {}: {own}",
        3 * IDLE
    );
    let db = Db::new(Backend::Sqlite).await;
    let server = Server::start_with_nofile(
        db.dir.path(),
        1024,
        &[
            ("BERTH_HEADER_READ_TIMEOUT", "300s"),
            ("BERTH_KEEP_ALIVE_TIMEOUT", "300s"),
        ],
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
            .await
            .unwrap_or_else(|_| panic!("connection {i} not accepted within 10 s"))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        held.push(s);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for _ in 0..3 {
        let resp = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("/healthz answers with 2,000 idle sockets held");
        assert_eq!(resp.status(), 200);
    }
    let log = server.log().join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("raised the open-file limit"), "{log}");
    drop(held);
}

/// A request that breaks a limit: what, its target, its headers, the status and code.
type Case = (
    &'static str,
    String,
    Vec<(String, String)>,
    u16,
    &'static str,
);

/// Over HTTP/1.1 and HTTP/2 alike: three 7 KB headers pass, and each documented limit (a
/// header value over 8 KiB, headers over 64 KiB in all, more than 100 headers, a request
/// target over 8 KiB) is answered in Berth's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_header_limits_are_kept_on_http1_and_http2() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let clients = [
        (
            reqwest::Version::HTTP_11,
            reqwest::Client::builder()
                .http1_only()
                .build()
                .expect("client"),
        ),
        (
            reqwest::Version::HTTP_2,
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .expect("client"),
        ),
    ];
    let value = |n: usize| "v".repeat(n);
    for (version, client) in clients {
        let get = |path: &str, headers: Vec<(String, String)>| {
            let mut req = client.get(format!("{}{path}", app.base));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send()
        };
        let three: Vec<_> = (0..3)
            .map(|i| (format!("x-big-{i}"), value(7000)))
            .collect();
        let resp = get("/healthz", three).await.expect("three 7 KB headers");
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200, "{version:?}: three 7 KB headers");

        let cases: Vec<Case> = vec![
            (
                "a 9 KB header",
                "/healthz".into(),
                vec![("x-big".into(), value(9000))],
                431,
                "headers_too_large",
            ),
            (
                "ten 7 KB headers",
                "/healthz".into(),
                (0..10)
                    .map(|i| (format!("x-big-{i}"), value(7000)))
                    .collect(),
                431,
                "headers_too_large",
            ),
            (
                "110 headers",
                "/healthz".into(),
                (0..110).map(|i| (format!("x-h-{i}"), "1".into())).collect(),
                431,
                "headers_too_large",
            ),
            (
                "a 9 KB target",
                format!("/healthz?q={}", value(9000)),
                vec![],
                414,
                "uri_too_long",
            ),
        ];
        for (what, path, headers, status, code) in cases {
            let resp = get(&path, headers)
                .await
                .unwrap_or_else(|e| panic!("{version:?}: {what}: {e}"));
            assert_eq!(resp.version(), version);
            assert_eq!(resp.status().as_u16(), status, "{version:?}: {what}");
            let body: Value = resp
                .json()
                .await
                .unwrap_or_else(|e| panic!("{version:?}: {what}: not JSON: {e}"));
            assert_eq!(body["error"]["code"], code, "{version:?}: {what}: {body}");
        }
    }
    app.stop().await;
}

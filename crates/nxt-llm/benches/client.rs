//! OpenAI client throughput and CPU cost against a loopback server that answers instantly.
//!
//! `cargo bench -p nxt-llm --bench client` (env `NXT_BENCH_REQUESTS`, default 20000, per row).
//!
//! The server is a minimal hyper server in a child process (this same binary, started with
//! `NXT_BENCH_SERVE=1`), so that the client's CPU time (getrusage of this process: every thread
//! of the client, its runtime included) excludes the server's. Rows: the `OpenAiClient`
//! (reqwest + rustls stack, full request building, retries bookkeeping, JSON parsing into
//! `Completion`s) at several concurrency limits, and a raw hyper client sending the same body
//! and parsing the answer into a `serde_json::Value`, as the floor of what the HTTP stack costs.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use nxt_llm::openai::{ClientConfig, OpenAiClient};
use nxt_llm::{GenerationRequest, Generator, Prompt, SamplingParams};

const COMPLETION: &str = r#"{"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"bench","choices":[{"index":0,"text":"    return sorted(xs)[len(xs) // 2]\n","finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":120,"completion_tokens":14,"total_tokens":134}}"#;
const MODELS: &str =
    r#"{"object":"list","data":[{"id":"bench","object":"model","created":0,"owned_by":"bench"}]}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let models = req.uri().path().ends_with("/models");
    // Read the whole request, as a real server must.
    let _ = req.into_body().collect().await;
    let body = if models { MODELS } else { COMPLETION };
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// Child mode: serve instantly on a free port, print it, exit when stdin closes.
fn serve() {
    std::thread::spawn(|| {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        std::io::stdout().flush().expect("flush");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                    .await;
            });
        }
    });
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF covers all our threads.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

struct Row {
    what: String,
    requests: usize,
    wall: f64,
    cpu: f64,
}

impl Row {
    fn print(&self) {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.0} |",
            self.what,
            self.requests,
            self.requests as f64 / self.wall,
            self.cpu / self.wall,
            self.cpu / self.requests as f64 * 1e6
        );
    }
}

fn bench_client(url: &str, concurrency: usize, requests: usize) -> Row {
    let mut cfg = ClientConfig::new([url.to_string()]);
    cfg.concurrency = concurrency;
    cfg.api_key = None;
    let client = OpenAiClient::new(cfg).expect("client");
    let req = GenerationRequest {
        prompt: Prompt::Text("def median(xs):\n    \"\"\"Return the median.\"\"\"\n".repeat(8)),
        n: 1,
        params: SamplingParams {
            temperature: 0.8,
            max_tokens: 256,
            seed: Some(1),
            ..Default::default()
        },
    };
    // Warm up: connection pool, model discovery.
    let warm: Vec<_> = (0..concurrency * 2).map(|_| req.clone()).collect();
    client.generate_many(&warm, &mut |_, r| {
        r.expect("warm-up request");
    });
    let reqs: Vec<_> = (0..requests).map(|_| req.clone()).collect();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut failed = 0;
    client.generate_many(&reqs, &mut |_, r| {
        if r.is_err() {
            failed += 1;
        }
    });
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    assert_eq!(failed, 0, "requests failed");
    Row {
        what: format!("OpenAiClient (reqwest), concurrency {concurrency}"),
        requests,
        wall,
        cpu,
    }
}

fn bench_raw_hyper(url: &str, concurrency: usize, requests: usize) -> Row {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let uri: hyper::Uri = format!("{url}/completions").parse().expect("uri");
    let body = serde_json::json!({
        "model": "bench",
        "prompt": "def median(xs):\n    \"\"\"Return the median.\"\"\"\n".repeat(8),
        "max_tokens": 256, "temperature": 0.8, "top_p": 1.0, "seed": 1
    })
    .to_string();
    let body = Bytes::from(body);
    let run = |n: usize| {
        let uri = uri.clone();
        let body = body.clone();
        rt.block_on(async move {
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.set_nodelay(true);
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build::<_, Full<Bytes>>(http);
            let client = Arc::new(client);
            let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let permit = sem.clone().acquire_owned().await.expect("permit");
                let (client, uri, body) = (client.clone(), uri.clone(), body.clone());
                set.spawn(async move {
                    let req = Request::post(uri)
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .expect("request");
                    let resp = client.request(req).await.expect("response");
                    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
                    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                    drop(permit);
                    v["choices"][0]["text"].as_str().map(str::len).unwrap_or(0)
                });
                while set.try_join_next().is_some() {}
            }
            while set.join_next().await.is_some() {}
        })
    };
    run(concurrency * 2);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    run(requests);
    Row {
        what: format!("raw hyper client, concurrency {concurrency}"),
        requests,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    }
}

fn start_server() -> (Child, u16) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .env("NXT_BENCH_SERVE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("child stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("port line");
    let port = line.trim().parse().expect("port number");
    (child, port)
}

fn main() {
    if std::env::var_os("NXT_BENCH_SERVE").is_some() {
        serve();
        return;
    }
    let requests: usize = std::env::var("NXT_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (mut child, port) = start_server();
    let url = format!("http://127.0.0.1:{port}/v1");
    std::thread::sleep(Duration::from_millis(100));
    println!(
        "client against an instant loopback server (separate process), {requests} requests per row"
    );
    println!("| client | requests | requests/s | client CPU cores | client CPU µs/request |");
    println!("|---|---|---|---|---|");
    for c in [1, 16, 64] {
        bench_client(&url, c, requests).print();
        bench_raw_hyper(&url, c, requests).print();
    }
    let _ = child.kill();
    let _ = child.wait();
}

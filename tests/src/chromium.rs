//! A real headless Chromium (Debian's `chromium`) driven over the Chrome
//! DevTools Protocol on loopback, for tests of the HTML reports: load a
//! page, evaluate JavaScript in it, and collect what went wrong (console
//! errors, exceptions, log errors) and every request it made, then take a
//! screenshot and print it to PDF.
//!
//! The browser runs with a throw-away profile and no network: host names
//! resolve to nothing and any request goes to a proxy that does not exist,
//! so a page that reaches out fails visibly instead of depending on the
//! machine. Every wait is bounded; the browser is closed (and killed if it
//! does not go) on drop.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Where Debian's package installs the browser (scripts/setup.sh installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Longest wait for the browser to start and print its DevTools address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for any one protocol command's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A browser process and the DevTools connection to it.
pub struct Chromium {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Events received so far, for [`Page`] diagnostics.
    events: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    _profile: tempfile::TempDir,
}

/// A tab, attached with a flat session.
pub struct Page {
    session: String,
    target: String,
    /// Index in the browser's event list where this page's events start.
    first_event: usize,
}

/// An error of the protocol client: what was being done and why it failed.
#[derive(Debug)]
pub struct CdpError(pub String);

impl std::fmt::Display for CdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CdpError {}

fn err<T>(msg: impl Into<String>) -> Result<T, CdpError> {
    Err(CdpError(msg.into()))
}

impl Chromium {
    /// Starts headless Chromium from [`CHROMIUM`].
    ///
    /// # Errors
    /// The browser is missing (the message says how to install it), does not
    /// start, or does not print its DevTools address in time.
    pub fn launch() -> Result<Chromium, CdpError> {
        Chromium::launch_from(Path::new(CHROMIUM))
    }

    /// Starts headless Chromium from `binary`.
    ///
    /// # Errors
    /// As [`Chromium::launch`].
    pub fn launch_from(binary: &Path) -> Result<Chromium, CdpError> {
        if !binary.is_file() {
            return err(format!(
                "{} not found: the report tests need a real headless Chromium. Install it with \
                 ./scripts/setup.sh (Debian package `chromium`: apt-get install -y chromium)",
                binary.display()
            ));
        }
        let profile = tempfile::Builder::new()
            .prefix("deliver-chromium-")
            .tempdir()
            .map_err(|e| CdpError(format!("temporary profile: {e}")))?;
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--remote-debugging-port=0",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--disable-extensions",
                "--metrics-recording-only",
                "--mute-audio",
                "--hide-scrollbars",
                // No network: names resolve to nothing, and whatever is not
                // a file goes to a proxy on the discard port, which refuses.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=http://127.0.0.1:9",
                "--window-size=1100,1400",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CdpError(format!("starting {}: {e}", binary.display())))?;
        // Chromium prints "DevTools listening on ws://…" on stderr; the rest
        // of stderr is kept for error messages (and drained so it never blocks).
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let pipe = child.stderr.take().expect("stderr is piped");
            let log = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(url) = line.split("DevTools listening on ").nth(1) {
                        let _ = tx.send(url.trim().to_owned());
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let url = match rx.recv_timeout(START_TIMEOUT) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = stderr.lock().map(|l| l.clone()).unwrap_or_default();
                return err(format!(
                    "{} printed no DevTools address within {START_TIMEOUT:?}; its stderr:\n{log}",
                    binary.display()
                ));
            }
        };
        let ws = connect(&url).inspect_err(|_| {
            let _ = child.kill();
            let _ = child.wait();
        })?;
        Ok(Chromium {
            child,
            ws,
            next_id: 1,
            events: Vec::new(),
            stderr,
            _profile: profile,
        })
    }

    /// What the browser printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<u64, CdpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| CdpError(format!("sending {method}: {e}")))?;
        Ok(id)
    }

    /// The next protocol message, or `None` when `deadline` passes first.
    fn receive(&mut self, deadline: Instant) -> Result<Option<Value>, CdpError> {
        loop {
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return serde_json::from_str(t.as_str())
                        .map(Some)
                        .map_err(|e| CdpError(format!("bad DevTools message {t}: {e}")));
                }
                Ok(Message::Close(_)) => return err("the browser closed the DevTools connection"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return err(format!("reading from DevTools: {e}")),
            }
        }
    }

    /// Sends a command and waits for its result, keeping the events that
    /// arrive meanwhile.
    fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, CdpError> {
        let id = self.send(method, params, session)?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let Some(msg) = self.receive(deadline)? else {
                return err(format!("{method}: no answer within {CALL_TIMEOUT:?}"));
            };
            if msg["id"] == id {
                if let Some(e) = msg.get("error") {
                    return err(format!("{method}: {e}"));
                }
                return Ok(msg["result"].clone());
            }
            if msg.get("method").is_some() {
                self.events.push(msg);
            }
        }
    }

    /// Opens a new tab on `url` (a `file://` URL) and waits for its load
    /// event, with the Page, Runtime, Log and Network domains recording
    /// from before the navigation.
    ///
    /// # Errors
    /// A protocol error, a navigation error, or no load event within `timeout`.
    pub fn open(&mut self, url: &str, timeout: Duration) -> Result<Page, CdpError> {
        let target = self.call("Target.createTarget", json!({ "url": "about:blank" }), None)?;
        let target = target["targetId"]
            .as_str()
            .ok_or_else(|| CdpError(format!("Target.createTarget gave no targetId: {target}")))?
            .to_owned();
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
            None,
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| {
                CdpError(format!(
                    "Target.attachToTarget gave no sessionId: {attached}"
                ))
            })?
            .to_owned();
        let page = Page {
            session,
            target,
            first_event: self.events.len(),
        };
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(&format!("{domain}.enable"), json!({}), Some(&page.session))?;
        }
        let nav = self.call("Page.navigate", json!({ "url": url }), Some(&page.session))?;
        if let Some(e) = nav.get("errorText") {
            return err(format!("navigating to {url}: {e}"));
        }
        let deadline = Instant::now() + timeout;
        let loaded =
            |m: &Value, s: &str| m["method"] == "Page.loadEventFired" && m["sessionId"] == s;
        if !self.events[page.first_event..]
            .iter()
            .any(|m| loaded(m, &page.session))
        {
            loop {
                let Some(msg) = self.receive(deadline)? else {
                    return err(format!("{url}: no load event within {timeout:?}"));
                };
                let done = loaded(&msg, &page.session);
                if msg.get("method").is_some() {
                    self.events.push(msg);
                }
                if done {
                    break;
                }
            }
        }
        Ok(page)
    }

    /// Evaluates `expression` in the page and returns its value (JSON).
    ///
    /// # Errors
    /// A protocol error, or the expression threw (the exception is in the message).
    pub fn eval(&mut self, page: &Page, expression: &str) -> Result<Value, CdpError> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
            Some(&page.session),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return err(format!("`{expression}` threw: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// A PNG of the whole page (beyond the viewport).
    ///
    /// # Errors
    /// A protocol error or bad base64.
    pub fn screenshot(&mut self, page: &Page) -> Result<Vec<u8>, CdpError> {
        let m = self.call("Page.getLayoutMetrics", json!({}), Some(&page.session))?;
        let size = &m["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(1100.0),
            size["height"].as_f64().unwrap_or(1400.0),
        );
        let r = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 }
            }),
            Some(&page.session),
        )?;
        decode(&r["data"], "Page.captureScreenshot")
    }

    /// Lays the page out as it prints: print media rules, at the width of
    /// an A4 page's printable area (186 mm at 96 px/in), for a screenshot of
    /// what the PDF holds without its page breaks.
    ///
    /// # Errors
    /// A protocol error.
    pub fn emulate_print(&mut self, page: &Page) -> Result<(), CdpError> {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({ "media": "print" }),
            Some(&page.session),
        )?;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 703, "height": 1000, "deviceScaleFactor": 1, "mobile": false }),
            Some(&page.session),
        )
        .map(|_| ())
    }

    /// The page printed to PDF on A4 (its `@page` rules apply).
    ///
    /// # Errors
    /// A protocol error or bad base64.
    pub fn pdf(&mut self, page: &Page) -> Result<Vec<u8>, CdpError> {
        let r = self.call(
            "Page.printToPDF",
            json!({ "preferCSSPageSize": true, "printBackground": true }),
            Some(&page.session),
        )?;
        decode(&r["data"], "Page.printToPDF")
    }

    /// The page's events: everything recorded since it was opened, plus
    /// whatever is queued now (read for up to 200 ms).
    pub fn events(&mut self, page: &Page) -> Result<Vec<Value>, CdpError> {
        let deadline = Instant::now() + Duration::from_millis(200);
        while let Some(msg) = self.receive(deadline)? {
            if msg.get("method").is_some() {
                self.events.push(msg);
            }
        }
        Ok(self.events[page.first_event..]
            .iter()
            .filter(|m| m["sessionId"] == page.session.as_str())
            .cloned()
            .collect())
    }

    /// URLs of every request the page made.
    ///
    /// # Errors
    /// A protocol error while reading pending events.
    pub fn requests(&mut self, page: &Page) -> Result<Vec<String>, CdpError> {
        Ok(self
            .events(page)?
            .iter()
            .filter(|m| m["method"] == "Network.requestWillBeSent")
            .filter_map(|m| m["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect())
    }

    /// What went wrong on the page: uncaught exceptions, console errors and
    /// assertions, log entries of level error, and failed loads.
    ///
    /// # Errors
    /// A protocol error while reading pending events.
    pub fn problems(&mut self, page: &Page) -> Result<Vec<String>, CdpError> {
        let mut out = Vec::new();
        for m in self.events(page)? {
            let p = &m["params"];
            match m["method"].as_str().unwrap_or("") {
                "Runtime.exceptionThrown" => {
                    out.push(format!("exception: {}", p["exceptionDetails"]))
                }
                "Runtime.consoleAPICalled"
                    if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                {
                    out.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" => {
                    out.push(format!("log error: {}", p["entry"]))
                }
                "Network.loadingFailed" => out.push(format!("failed load: {p}")),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Closes a tab.
    ///
    /// # Errors
    /// A protocol error.
    pub fn close(&mut self, page: Page) -> Result<(), CdpError> {
        self.call(
            "Target.closeTarget",
            json!({ "targetId": page.target }),
            None,
        )
        .map(|_| ())
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Ask first, so the browser takes its helper processes with it; then
        // make sure.
        let _ = self.send("Browser.close", json!({}), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decode(v: &Value, what: &str) -> Result<Vec<u8>, CdpError> {
    use base64::Engine as _;
    let s = v
        .as_str()
        .ok_or_else(|| CdpError(format!("{what} returned no data")))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| CdpError(format!("{what}: bad base64: {e}")))
}

/// Opens the WebSocket to `ws://127.0.0.1:PORT/devtools/browser/ID`.
fn connect(url: &str) -> Result<WebSocket<TcpStream>, CdpError> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| CdpError(format!("unexpected DevTools address {url}")))?;
    let stream =
        TcpStream::connect(addr).map_err(|e| CdpError(format!("connecting to {addr}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| CdpError(e.to_string()))?;
    let (mut ws, _) = tungstenite::client(url, stream)
        .map_err(|e| CdpError(format!("WebSocket handshake with {url}: {e}")))?;
    // Short reads from here on: every wait checks its own deadline.
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| CdpError(e.to_string()))?;
    Ok(ws)
}

/// `file://` URL of an absolute path (percent-encoding what a URL cannot hold).
pub fn file_url(path: &Path) -> String {
    let abs: PathBuf = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut url = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

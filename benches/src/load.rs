//! Load-generating clients: many real XMPP connections in this one process,
//! each driven by a task that sends what it is given and reports what it
//! receives, stamped with one clock shared by every sender and receiver.

use anyhow::Result;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::stanzastream::{Event, StanzaStream};
use xmpp_parsers::message::{Lang, Message};
use xmpp_parsers::presence::{Presence, Type as PresenceType};

/// What the clients saw.
#[derive(Debug)]
pub enum Seen {
    /// A benchmark message: its flow, when it was sent and when it arrived
    /// (nanoseconds since the shared epoch).
    Message { flow: u8, sent: u64, arrived: u64 },
    /// Client `index` saw its foreign session come up (the session's own
    /// available presence, relayed by the gateway).
    SessionUp { index: usize },
}

/// One connected client.
pub struct Peer {
    out: mpsc::UnboundedSender<Stanza>,
    task: tokio::task::JoinHandle<()>,
}

/// The clock every timestamp is taken from.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Starts the clock.
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Peer {
    /// Takes over a logged-in client's stream. `session` is the gateway JID
    /// of its foreign session, if it is a controller: its available presence
    /// is reported as [`Seen::SessionUp`].
    pub fn drive(
        stream: StanzaStream,
        index: usize,
        session: Option<Jid>,
        clock: Clock,
        seen: mpsc::UnboundedSender<Seen>,
    ) -> Peer {
        let (out, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(stream, rx, index, session, clock, seen));
        Peer { out, task }
    }

    /// Sends a chat message whose body carries its flow and send time.
    pub fn message(&self, to: &Jid, flow: u8, clock: &Clock) {
        let body = format!("{flow} {}", clock.now());
        let m = Message::chat(to.clone()).with_body(Lang::new(), body);
        let _ = self.out.send(Stanza::Message(m));
    }

    /// Sends available presence (to the server: a broadcast).
    pub fn available(&self) {
        let _ = self
            .out
            .send(Stanza::Presence(Presence::new(PresenceType::None)));
    }

    /// Logs out and waits until the stream is closed.
    pub async fn close(self) {
        drop(self.out);
        let _ = self.task.await;
    }
}

async fn run(
    mut stream: StanzaStream,
    mut out: mpsc::UnboundedReceiver<Stanza>,
    index: usize,
    session: Option<Jid>,
    clock: Clock,
    seen: mpsc::UnboundedSender<Seen>,
) {
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Event::Stanza(s)) => {
                    let arrived = clock.now();
                    if let Some(s) = observe(s, index, session.as_ref(), arrived) {
                        let _ = seen.send(s);
                    }
                }
                Some(Event::Stream(_)) => {}
                None => return,
            },
            next = out.recv() => match next {
                Some(stanza) => { stream.send(Box::new(stanza)).await; }
                None => {
                    stream.close().await;
                    return;
                }
            },
        }
    }
}

fn observe(stanza: Stanza, index: usize, session: Option<&Jid>, arrived: u64) -> Option<Seen> {
    match stanza {
        Stanza::Message(m) => {
            let body = m.bodies.values().next()?;
            let (flow, sent) = body.split_once(' ')?;
            Some(Seen::Message {
                flow: flow.parse().ok()?,
                sent: sent.parse().ok()?,
                arrived,
            })
        }
        Stanza::Presence(p)
            if p.type_ == PresenceType::None && session.is_some() && p.from.as_ref() == session =>
        {
            Some(Seen::SessionUp { index })
        }
        _ => None,
    }
}

/// Calls `send(i)` for i = 0, 1, ... at `rate` per second for `duration`
/// (open loop: the schedule does not wait for answers). Returns how many.
pub async fn paced(rate: u64, duration: Duration, mut send: impl FnMut(u64)) -> u64 {
    let start = Instant::now();
    let total = rate * duration.as_millis() as u64 / 1000;
    let mut sent = 0;
    while sent < total {
        let due = (start.elapsed().as_nanos() as u64 * rate / 1_000_000_000).min(total);
        while sent < due {
            send(sent);
            sent += 1;
        }
        // tokio's timer has a 1 ms resolution: at high rates each wake-up
        // sends what has become due meanwhile.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    sent
}

/// Latencies in nanoseconds per flow, of the messages that arrived.
#[derive(Default)]
pub struct Samples {
    pub flows: Vec<Vec<u64>>,
}

impl Samples {
    /// Receives until `expected[flow]` messages of each flow arrived or
    /// `timeout` passed; also returns every [`Seen::SessionUp`] meanwhile.
    pub async fn collect(
        seen: &mut mpsc::UnboundedReceiver<Seen>,
        expected: &[u64],
        timeout: Duration,
    ) -> Samples {
        let mut flows: Vec<Vec<u64>> = expected.iter().map(|_| Vec::new()).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let done = |flows: &Vec<Vec<u64>>| {
            flows
                .iter()
                .zip(expected)
                .all(|(f, &n)| f.len() as u64 >= n)
        };
        while !done(&flows) {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Some(Seen::Message {
                    flow,
                    sent,
                    arrived,
                })) => {
                    if let Some(f) = flows.get_mut(flow as usize) {
                        f.push(arrived.saturating_sub(sent));
                    }
                }
                Ok(Some(Seen::SessionUp { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Samples { flows }
    }
}

/// Waits until every client with an index in `want` reported its session
/// up; returns when each came (nanoseconds of `clock`), or fails after
/// `timeout`.
pub async fn sessions_up(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    want: std::ops::Range<usize>,
    timeout: Duration,
    clock: &Clock,
) -> Result<Vec<u64>> {
    let n = want.len();
    let mut up = vec![None; n];
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while count < n {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(Seen::SessionUp { index })) => {
                if let Some(slot) = index.checked_sub(want.start).and_then(|i| up.get_mut(i))
                    && slot.is_none()
                {
                    *slot = Some(clock.now());
                    count += 1;
                }
            }
            Ok(Some(Seen::Message { .. })) => {}
            Ok(None) => anyhow::bail!("every client is gone"),
            Err(_) => anyhow::bail!("only {count} of {n} sessions came up within {timeout:?}"),
        }
    }
    Ok(up.into_iter().flatten().collect())
}

/// Drops whatever was seen so far.
pub fn drain(seen: &mut mpsc::UnboundedReceiver<Seen>) {
    while seen.try_recv().is_ok() {}
}

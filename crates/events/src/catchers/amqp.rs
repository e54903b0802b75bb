//! The `amqp` catcher: OpenStack `oslo.messaging` notifications from a
//! RabbitMQ topic exchange (what ManageIQ's OpenStack event catcher reads).
//!
//! On connect it declares a durable topic exchange (`nova`), a durable queue
//! (`automate.<provider>`) bound to it with `notifications.info`, sets
//! `basic.qos(prefetch)` and consumes with manual acknowledgement. Each
//! message is parsed ([`super::oslo`]) and sent downstream with a durability
//! request; the broker message is acked only when the pipeline answers
//! `Ok(())` (the event is stored), and nacked with requeue when it answers
//! `Err` or drops the question. Filtered types are acked at once; messages
//! that are not oslo notifications are rejected without requeue (they would
//! come back forever) after a warning. A lost connection is retried with
//! exponential backoff (100 ms doubling to 30 s, each attempt logged);
//! unacknowledged messages go back to the queue, so nothing is lost and
//! only events in flight at the break can arrive twice (the handler
//! de-duplicates them).

use super::{oslo, CatcherError, CatcherStats, Ctx, Offer};
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `kind: amqp` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (vhost `/` is `%2f`). TLS
    /// (`amqps://`) is not built in.
    pub url: String,
    /// The topic exchange OpenStack publishes to (`nova`, `cinder`, ...).
    pub exchange: String,
    /// The binding key (`notifications.info`; `notifications.*` for every
    /// priority).
    pub routing_key: String,
    /// The durable queue to consume; empty = `automate.<provider name>`.
    pub queue: String,
    /// Unacknowledged messages the broker may hand out at once.
    pub prefetch: u16,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "nova".into(),
            routing_key: "notifications.info".into(),
            queue: String::new(),
            prefetch: 100,
        }
    }
}

/// The most unacknowledged messages a broker may hand out at once.
pub const MAX_PREFETCH: u16 = 10_000;

impl AmqpConfig {
    /// Every problem of these settings, as (field under `catcher`, message).
    pub(crate) fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.url.parse::<AMQPUri>() {
            out.push(("url", format!("{}: {e}", redact(&self.url))));
        }
        for (field, v, may_be_empty) in [
            ("exchange", &self.exchange, false),
            ("routing_key", &self.routing_key, true),
            ("queue", &self.queue, true),
        ] {
            if let Err(m) = super::check_name(v, may_be_empty) {
                out.push((field, m));
            }
        }
        if !(1..=MAX_PREFETCH).contains(&self.prefetch) {
            out.push((
                "prefetch",
                format!("{} is out of range 1..={MAX_PREFETCH}", self.prefetch),
            ));
        }
        out
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the broker to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping catcher waits for the answers of events in flight.
const DRAIN: Duration = Duration::from_secs(5);
/// Delay before a refused event is requeued (a failing store is not
/// hammered).
const REQUEUE_DELAY: Duration = Duration::from_millis(500);

/// The URL with its password hidden, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match auth.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// A built `amqp` catcher.
#[derive(Clone)]
pub(crate) struct AmqpCatcher {
    uri: AMQPUri,
    shown: String,
    exchange: String,
    routing_key: String,
    queue: String,
    prefetch: u16,
}

impl AmqpConfig {
    /// The queue name for `provider`.
    pub fn queue_name(&self, provider: &str) -> String {
        if self.queue.trim().is_empty() {
            format!("automate.{provider}")
        } else {
            self.queue.clone()
        }
    }

    pub(crate) fn build(&self, ctx: &Ctx) -> Result<AmqpCatcher, CatcherError> {
        let uri: AMQPUri = self
            .url
            .parse()
            .map_err(|e| ctx.config_error(format!("amqp url {}: {e}", redact(&self.url))))?;
        if uri.scheme == AMQPScheme::AMQPS {
            return Err(ctx.config_error("amqps:// (TLS) is not supported by this build"));
        }
        if let Some((field, message)) = self.check().into_iter().next() {
            return Err(ctx.config_error(format!("amqp {field}: {message}")));
        }
        Ok(AmqpCatcher {
            uri,
            shown: redact(&self.url),
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            queue: self.queue_name(&ctx.provider.name),
            prefetch: self.prefetch,
        })
    }
}

enum End {
    Shutdown,
    Lost(String),
}

enum Fail {
    Amqp(String),
    Sink,
}

impl From<lapin::Error> for Fail {
    fn from(e: lapin::Error) -> Fail {
        Fail::Amqp(e.to_string())
    }
}

/// Closes the connection (its channels with it): the broker requeues what
/// was not acked.
async fn close(conn: Connection) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        conn.close(200, "automate catcher stopping".into()),
    )
    .await;
}

/// Closes the connection when the catcher's future is dropped mid-session
/// (its task aborted): lapin keeps a connection open until it is closed,
/// and with it the messages delivered but not acked.
struct ConnGuard(Option<Connection>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(close(conn));
            }
        }
    }
}

fn prefix(ctx: &Ctx) -> String {
    format!(
        "MIQ({}) EMS [{}] as [{}]",
        ctx.provider.catcher_name(),
        ctx.provider.hostname,
        ctx.provider.userid
    )
}

impl AmqpCatcher {
    pub(crate) async fn run(
        self,
        ctx: Ctx,
        shutdown: CancellationToken,
    ) -> Result<(), CatcherError> {
        let mut backoff = BACKOFF_MIN;
        let mut attempt: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let mut connected = false;
            let reason = match self.session(&ctx, &shutdown, &mut connected).await {
                Ok(End::Shutdown) => return Ok(()),
                Err(Fail::Sink) => return Err(ctx.closed()),
                Ok(End::Lost(r)) | Err(Fail::Amqp(r)) => r,
            };
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if connected {
                backoff = BACKOFF_MIN;
                attempt = 0;
            }
            attempt += 1;
            CatcherStats::bump(&ctx.stats.reconnects);
            tracing::warn!(
                target: "evm",
                "{} AMQP {} queue [{}]: {}; reconnect attempt {attempt} in {} ms",
                prefix(&ctx),
                self.shown,
                self.queue,
                reason,
                backoff.as_millis()
            );
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn session(
        &self,
        ctx: &Ctx,
        shutdown: &CancellationToken,
        connected: &mut bool,
    ) -> Result<End, Fail> {
        let connect = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri(self.uri.clone(), ConnectionProperties::default()),
        );
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            c = connect => match c {
                Ok(c) => c?,
                Err(_) => return Err(Fail::Amqp(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))),
            },
        };
        let mut guard = ConnGuard(Some(conn));
        let result = match guard.0.as_ref() {
            Some(conn) => self.consume(ctx, shutdown, connected, conn).await,
            None => Ok(End::Shutdown),
        };
        if let Some(conn) = guard.0.take() {
            close(conn).await;
        }
        result
    }

    async fn consume(
        &self,
        ctx: &Ctx,
        shutdown: &CancellationToken,
        connected: &mut bool,
        conn: &Connection,
    ) -> Result<End, Fail> {
        let ch = conn.create_channel().await?;
        ch.exchange_declare(
            self.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            self.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            self.queue.as_str().into(),
            self.exchange.as_str().into(),
            self.routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = ch
            .basic_consume(
                self.queue.as_str().into(),
                format!("automate-{}", ctx.provider.name).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // The delegate runs synchronously on lapin's reader, in delivery
        // order: forwarding here keeps the broker's order.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DeliveryResult>();
        consumer.set_delegate(move |d: DeliveryResult| {
            let _ = tx.send(d);
            std::future::ready(())
        });
        *connected = true;
        tracing::info!(
            target: "evm",
            "{} AMQP connected to {}, consuming queue [{}] bound to exchange [{}] with [{}]",
            prefix(ctx),
            self.shown,
            self.queue,
            self.exchange,
            self.routing_key
        );
        let mut inflight: JoinSet<()> = JoinSet::new();
        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(End::Shutdown),
                Some(_) = inflight.join_next() => {}
                d = rx.recv() => match d {
                    None | Some(Ok(None)) => break Ok(End::Lost("the consumer was cancelled".into())),
                    Some(Err(e)) => break Ok(End::Lost(e.to_string())),
                    Some(Ok(Some(delivery))) => {
                        match self.handle(ctx, delivery, shutdown, &mut inflight).await {
                            Ok(true) => {}
                            Ok(false) => break Ok(End::Shutdown),
                            Err(f) => break Err(f),
                        }
                    }
                },
            }
        };
        // Let the answers of events already sent arrive and be acked; what
        // is left unacked goes back to the queue when the channel closes.
        let _ = tokio::time::timeout(DRAIN, async {
            while inflight.join_next().await.is_some() {}
        })
        .await;
        inflight.abort_all();
        end
    }

    /// Handles one delivery; `Ok(false)` on shutdown.
    async fn handle(
        &self,
        ctx: &Ctx,
        delivery: Delivery,
        shutdown: &CancellationToken,
        inflight: &mut JoinSet<()>,
    ) -> Result<bool, Fail> {
        let ev = match oslo::parse_bytes(&delivery.data) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(
                    target: "evm",
                    "{} AMQP message {} on queue [{}] dropped: {e}",
                    prefix(ctx),
                    delivery.delivery_tag,
                    self.queue
                );
                ctx.stats.problem(format!(
                    "message {} (routing key {}): {e}",
                    delivery.delivery_tag,
                    delivery.routing_key.as_str()
                ));
                delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
                return Ok(true);
            }
        };
        match ctx.offer(ev, true, shutdown).await {
            Offer::Skipped => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
                Ok(true)
            }
            Offer::Sent(rx) => {
                let stats = Arc::clone(&ctx.stats);
                let acker = delivery.acker;
                inflight.spawn(async move {
                    if Ctx::settle(&stats, rx).await {
                        let _ = acker.ack(BasicAckOptions::default()).await;
                    } else {
                        tokio::time::sleep(REQUEUE_DELAY).await;
                        let _ = acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                multiple: false,
                            })
                            .await;
                    }
                });
                Ok(true)
            }
            // Not acked: the broker requeues it when the channel closes.
            Offer::Cancelled => Ok(false),
            Offer::Closed => Err(Fail::Sink),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn hides_passwords() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://host:5672"), "amqp://host:5672");
    }
}

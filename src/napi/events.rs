//! Events to the application's listeners (`manager.on(...)`): a weak threadsafe function, so a
//! listener never keeps the process alive and no thread ever waits for the JS thread.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::events::{Event, EventSink};

/// An event for `on(...)` listeners.
#[napi(object)]
pub struct CacheEvent {
  /// `'fallback' | 'recovered' | 'error'`
  #[napi(js_name = "type", ts_type = "'fallback' | 'recovered' | 'error'")]
  pub event_type: String,
  /// fallback: the failure that opened the breaker.
  pub cause: Option<String>,
  /// fallback: `timeout | connection | misconfiguration | simulated`; error: `misconfiguration | replay | write-refused`.
  pub kind: Option<String>,
  /// recovered: how long the outage lasted (ms).
  pub outage_ms: Option<f64>,
  /// recovered: journal operations applied to Redis.
  pub replayed: Option<f64>,
  /// error: what went wrong.
  pub message: Option<String>,
}

impl From<Event> for CacheEvent {
  fn from(e: Event) -> Self {
    let empty = |t: &str| CacheEvent {
      event_type: t.into(),
      cause: None,
      kind: None,
      outage_ms: None,
      replayed: None,
      message: None,
    };
    match e {
      Event::Fallback { cause, kind } => CacheEvent {
        cause: Some(cause),
        kind: Some(kind.into()),
        ..empty("fallback")
      },
      Event::Recovered { outage_ms, replayed } => CacheEvent {
        outage_ms: Some(outage_ms as f64),
        replayed: Some(replayed as f64),
        ..empty("recovered")
      },
      Event::Error { message, kind } => CacheEvent {
        message: Some(message),
        kind: Some(kind.into()),
        ..empty("error")
      },
    }
  }
}

/// Delivers events to a JS function.
pub struct JsEventSink(ThreadsafeFunction<CacheEvent, (), CacheEvent, Status, false, true>);

impl JsEventSink {
  /// A sink calling `listener` (weak: it never keeps the process alive).
  pub fn new(listener: Function<CacheEvent, ()>) -> Result<Self> {
    let tsfn = listener
      .build_threadsafe_function::<CacheEvent>()
      .callee_handled::<false>()
      .weak::<true>()
      .build()?;
    Ok(JsEventSink(tsfn))
  }
}

impl EventSink for JsEventSink {
  fn emit(&self, event: Event) {
    // NonBlocking: never wait for the JS thread; a closing environment just drops it
    let _ = self.0.call(event.into(), ThreadsafeFunctionCallMode::NonBlocking);
  }
}

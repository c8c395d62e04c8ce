//! A `setTimeout` timer for the driver's deadlines and keepalives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use worker::Delay;

/// A `setTimeout` timer that wakes the task which polled it last.
///
/// `worker::Delay` keeps the waker of its first poll only. The streamed body
/// is polled by a new task for each `pull()` of the response's
/// `ReadableStream`, and the driver keeps a pending timer across pulls while
/// its deadline stands (as it does when an origin chunk arrives in the same
/// millisecond as the one before): the timer then wakes a finished task and
/// the keepalive never goes out. So `Delay` is polled here with a waker that
/// forwards to the latest one, as the `Future` contract asks.
pub(super) struct Timer {
    delay: Delay,
    latest: Arc<LatestWaker>,
    forward: Waker,
}

impl Timer {
    pub(super) fn new(wait: Duration) -> Self {
        let latest = Arc::new(LatestWaker(AtomicWaker::new()));
        Timer {
            delay: Delay::from(wait),
            forward: Waker::from(latest.clone()),
            latest,
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.latest.0.register(cx.waker());
        Pin::new(&mut this.delay).poll(&mut std::task::Context::from_waker(&this.forward))
    }
}

struct LatestWaker(AtomicWaker);

impl Wake for LatestWaker {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

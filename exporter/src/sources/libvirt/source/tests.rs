//! Stuck-call handling with a fake blocking host: no second call while one hangs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// Blocks its first refresh until released; counts refreshes.
struct Hanging {
    refreshes: Arc<AtomicU32>,
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    release: mpsc::Receiver<()>,
    panic_on: Option<u32>,
}

impl Blocking for Hanging {
    fn refresh(&mut self) -> GuestsSnapshot {
        let n = self.refreshes.fetch_add(1, Ordering::SeqCst);
        let _ = self.entered.send(());
        if n == 0 {
            let _ = self.release.recv();
        }
        if self.panic_on == Some(n) {
            panic!("refresh {n} panics");
        }
        GuestsSnapshot {
            up: true,
            ..GuestsSnapshot::default()
        }
    }
}

fn hanging(
    panic_on: Option<u32>,
) -> (
    LibvirtSource<Hanging>,
    Arc<AtomicU32>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    mpsc::Sender<()>,
) {
    // As in production: libvirt's event loop thread runs alongside the refreshes.
    crate::sources::libvirt::start_event_loop().expect("the libvirt event loop starts");
    let refreshes = Arc::new(AtomicU32::new(0));
    let (entered, entered_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release) = mpsc::channel();
    let source = LibvirtSource::with(Hanging {
        refreshes: Arc::clone(&refreshes),
        entered,
        release,
        panic_on,
    });
    (source, refreshes, entered_rx, release_tx)
}

/// Polls `collect` until it succeeds, within a deadline.
async fn until_ok(source: &mut LibvirtSource<Hanging>) -> SourceData {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match source.collect(SystemTime::now()).await {
            Ok(data) => return data,
            Err(LibvirtError::Stuck(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("no success before the deadline: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_call_is_not_joined_by_another() {
    let (mut source, refreshes, mut entered, release) = hanging(None);
    // The refresh task's timeout drops `collect` while libvirt is stuck.
    tokio::select! {
        r = source.collect(SystemTime::now()) => panic!("the first refresh hangs, got {r:?}"),
        _ = entered.recv() => {}
    }
    for _ in 0..3 {
        match source.collect(SystemTime::now()).await {
            Err(LibvirtError::Stuck(_)) => {}
            other => panic!("expected Stuck, got {other:?}"),
        }
    }
    assert_eq!(
        refreshes.load(Ordering::SeqCst),
        1,
        "no second call while stuck"
    );

    release.send(()).expect("the stuck call is waiting");
    let data = until_ok(&mut source).await;
    assert_eq!(
        data,
        SourceData::Guests(GuestsSnapshot {
            up: true,
            ..GuestsSnapshot::default()
        })
    );
    // The stuck call's own result was dropped: the success is a fresh, second refresh.
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_refresh_fails_once() {
    let (mut source, refreshes, _entered, release) = hanging(Some(1));
    release.send(()).expect("pre-released");
    assert!(source.collect(SystemTime::now()).await.is_ok());
    match source.collect(SystemTime::now()).await {
        Err(LibvirtError::Panicked(_)) => {}
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(source.collect(SystemTime::now()).await.is_ok());
    assert_eq!(refreshes.load(Ordering::SeqCst), 3);
}

//! The registration on libvirt's test driver, through the default event loop: events reach the
//! sink in order, dropping the registration deregisters and frees the sink exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use super::*;

fn fixture() -> String {
    format!(
        "test://{}/tests/fixtures/libvirt-node.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Counts its drops: proves when (and how often) libvirt freed the sink that owns it.
struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn events_reach_the_sink_until_deregistered_and_the_sink_is_freed_once() {
    start_event_loop().expect("the default event loop starts");
    assert_eq!(start_event_loop(), Ok(()), "a second start is a no-op");
    let conn = Connect::open(Some(&fixture())).expect("the fixture opens read-write");
    let freed = Arc::new(AtomicUsize::new(0));
    let owned = CountDrop(Arc::clone(&freed));
    let (tx, rx) = mpsc::channel();
    let registration = register_lifecycle(
        &conn,
        Box::new(move |name: &str, event, detail| {
            let _ = &owned;
            let _ = tx.send((name.to_string(), event, detail));
        }),
    )
    .expect("the callback registers");

    let dom = conn
        .lookup_domain_by_name("instance-00000001")
        .expect("the running guest");
    dom.suspend().expect("suspend");
    dom.resume().expect("resume");
    dom.destroy().expect("destroy");
    dom.create().expect("start");
    let name = "instance-00000001".to_string();
    let want = [
        (name.clone(), 3, 0),
        (name.clone(), 4, 0),
        (name.clone(), 5, 1),
        (name, 2, 0),
    ];
    for w in want {
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an event within 10 s");
        assert_eq!(got, w);
    }
    assert_eq!(freed.load(Ordering::SeqCst), 0, "freed while registered");

    drop(registration);
    until("the sink is freed", || freed.load(Ordering::SeqCst) > 0);
    dom.suspend().expect("suspend again");
    // The sink, and its sender with it, is gone: no event can reach it any more.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    drop(conn);
    assert_eq!(freed.load(Ordering::SeqCst), 1, "freed exactly once");
}

#[test]
fn a_panicking_sink_does_not_unwind_into_libvirt() {
    start_event_loop().expect("the default event loop starts");
    let conn = Connect::open(Some(&fixture())).expect("the fixture opens read-write");
    let (tx, rx) = mpsc::channel();
    let registration = register_lifecycle(
        &conn,
        Box::new(move |_: &str, event, _| {
            let _ = tx.send(event);
            assert_ne!(event, 3, "this sink panics on suspend");
        }),
    )
    .expect("the callback registers");
    let dom = conn
        .lookup_domain_by_name("plain-guest")
        .expect("the running guest");
    dom.suspend().expect("suspend");
    dom.resume().expect("resume");
    let got: Vec<i32> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("an event"))
        .collect();
    assert_eq!(got, [3, 4], "the loop lives on after the panic");
    drop(registration);
}

#[test]
fn a_failed_registration_frees_the_sink_once_itself() {
    start_event_loop().expect("the default event loop starts");
    let conn = Connect::open(Some(&fixture())).expect("the fixture opens read-write");
    let freed = Arc::new(AtomicUsize::new(0));
    let owned = CountDrop(Arc::clone(&freed));
    let sink: Sink = Box::new(move |_: &str, _, _| {
        let _ = &owned;
    });
    // An event id libvirt does not know: it refuses the registration.
    let error = register(&conn, 10_000, sink).expect_err("an unknown event id is refused");
    assert!(error.to_string().contains("eventID"), "{error}");
    assert_eq!(freed.load(Ordering::SeqCst), 1, "freed by us, at once");
    drop(conn);
    assert_eq!(freed.load(Ordering::SeqCst), 1, "and never again");
}

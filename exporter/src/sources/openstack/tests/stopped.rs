//! Stopped servers through the whole source: first seen at Nova's `updated`, remembered in
//! the state file across a restart, aged by the injected clock.

use super::*;
use crate::snapshot::{Held, StoppedBucket};

/// The recorded SHUTOFF server (m1.tiny) and its project.
const SHUTOFF: &str = "bd312de7-bd04-4d59-9f73-d913096d7ad6";
const PROJECT: &str = "dc631d2c748e4d5e875492dc8ed77595";
/// Its recorded `updated`.
const UPDATED: &str = "2026-11-22T14:45:50Z";

fn buckets(snap: &ProjectsSnapshot) -> BTreeMap<(String, u64), Held> {
    snap.projects
        .iter()
        .flat_map(|p| p.stopped.iter().map(move |(b, h)| (p, b, h)))
        .map(|(p, StoppedBucket { status, older_than }, h)| {
            assert_eq!(
                p.project.id, PROJECT,
                "only that project has a stopped server"
            );
            ((status.clone(), older_than.as_secs() / 86_400), *h)
        })
        .collect()
}

fn tiny() -> Held {
    Held {
        instances: 1,
        vcpus: 1,
        memory_bytes: 512 << 20,
    }
}

#[tokio::test]
async fn stopped_servers_age_from_updated_and_a_restart_keeps_the_remembered_time() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut src = source(&fake, Some(path.clone()), fast()).await;
    // Four days after its last change: the 1d bucket. (Not later: a state file whose window
    // ends after the real clock is set aside at load.)
    let now = at(UPDATED) + Duration::from_secs(4 * 86_400);
    let snap = src.refresh(now).await.unwrap();
    let want: BTreeMap<_, _> = [(("shutoff".into(), 1), tiny())].into();
    assert_eq!(buckets(&snap), want);

    // The state file remembers it: 40 days earlier than `updated` says (as if the exporter
    // had seen the stop itself). A restarted source serves the remembered time, not `updated`.
    let cloud = src.settings.cloud.clone();
    let state::Loaded::Resumed(acc, mut stopped) = state::load(&path, &cloud).unwrap() else {
        panic!("the state resumes")
    };
    let since = &mut stopped.servers.get_mut(SHUTOFF).unwrap().since;
    let updated = *since;
    assert_eq!(
        updated,
        at(UPDATED)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    *since = updated - 40 * 86_400;
    state::save(&path, &cloud, &acc, &stopped).unwrap();
    let mut restarted = source(&fake, Some(path.clone()), fast()).await;
    let snap = restarted
        .refresh(now + Duration::from_secs(60))
        .await
        .unwrap();
    let want: BTreeMap<_, _> = [1, 7, 30].map(|d| (("shutoff".into(), d), tiny())).into();
    assert_eq!(buckets(&snap), want);

    // Without a state file the time falls back to `updated` again.
    let mut memory_only = source(&fake, None, fast()).await;
    let snap = memory_only
        .refresh(now + Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(buckets(&snap).len(), 1);
}

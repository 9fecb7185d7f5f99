use time::macros::datetime;

use super::*;
use crate::store::temp_store as store;

const T0: OffsetDateTime = datetime!(2026-11-21 10:00:00.5 UTC);

#[tokio::test]
async fn a_fresh_store_has_no_control_state() {
    let (_dir, store) = store().await;
    assert_eq!(
        store.control_state().await.unwrap(),
        ControlState::default()
    );
    assert_eq!(store.emergency().await.unwrap(), Emergency::default());
}

#[tokio::test]
async fn emergency_mode_is_persisted() {
    let (dir, store) = store().await;
    assert!(!store.set_emergency(true, "operator", T0).await.unwrap());
    assert!(store.set_emergency(true, "operator", T0).await.unwrap());
    // Another handle (another process) sees it.
    let other = dir.reopen().await;
    assert_eq!(
        other.emergency().await.unwrap(),
        Emergency {
            enabled: true,
            set_by: Some("operator".into()),
            set_at: Some(T0),
        }
    );
    assert!(other.control_state().await.unwrap().emergency);
    assert!(other.set_emergency(false, "bob", T0).await.unwrap());
    assert!(!store.control_state().await.unwrap().emergency);
}

#[tokio::test]
async fn upstreams_are_disabled_and_enabled() {
    let (_dir, store) = store().await;
    assert!(
        store
            .disable_upstream("notes", "operator", "incident 7", T0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .disable_upstream("notes", "bob", "again", T0)
            .await
            .unwrap()
    );
    assert!(
        store
            .disable_upstream("jira", "operator", "", T0)
            .await
            .unwrap()
    );
    let disabled = store.disabled_upstreams().await.unwrap();
    assert_eq!(disabled.len(), 2);
    assert_eq!(
        disabled[1],
        DisabledUpstream {
            name: "notes".into(),
            disabled_by: "operator".into(),
            disabled_at: T0,
            reason: "incident 7".into(),
        }
    );
    let state = store.control_state().await.unwrap();
    assert!(state.is_disabled("notes") && state.is_disabled("jira"));
    assert!(store.enable_upstream("notes").await.unwrap());
    assert!(!store.enable_upstream("notes").await.unwrap());
    let state = store.control_state().await.unwrap();
    assert!(!state.is_disabled("notes") && state.is_disabled("jira"));
}

#[tokio::test]
async fn revoking_again_moves_the_instant_forward() {
    let (_dir, store) = store().await;
    let r = store
        .revoke_audience("https://notes.internal", "operator", T0)
        .await
        .unwrap();
    assert_eq!(r.revoked_before, T0);
    let later = T0 + time::Duration::seconds(5);
    store
        .revoke_audience("https://notes.internal", "bob", later)
        .await
        .unwrap();
    assert_eq!(
        store.revocations().await.unwrap(),
        [Revocation {
            audience: "https://notes.internal".into(),
            revoked_before: later,
            revoked_by: "bob".into(),
        }]
    );
    let state = store.control_state().await.unwrap();
    assert_eq!(state.revocations.len(), 1);
    assert_eq!(state.revocations[0].revoked_before, later);
}

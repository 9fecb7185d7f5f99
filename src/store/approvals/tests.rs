use std::time::Duration;

use time::macros::datetime;

use super::*;
use crate::decide::approval::sample_binding;
use crate::store::temp_store as store;

const T0: OffsetDateTime = datetime!(2026-11-21 10:00:00.123456789 UTC);
const TTL: Duration = Duration::from_secs(3600);

fn at(minutes: i64) -> OffsetDateTime {
    T0 + time::Duration::minutes(minutes)
}

const BOB: Decider<'static> = Decider {
    id: "bob",
    is_approver: true,
};

fn refusal<T: std::fmt::Debug>(r: Result<T, ApprovalError>) -> Refusal {
    match r {
        Err(ApprovalError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_approval_round_trips_through_the_store() {
    let (_dir, store) = store().await;
    let created = store
        .create_approval(sample_binding(), T0, TTL)
        .await
        .unwrap();
    assert!(
        created.id.starts_with("apr_") && created.id.len() == 20,
        "{}",
        created.id
    );
    assert_eq!(created.status, Status::Pending);
    let read = store.approval(&created.id).await.unwrap().unwrap();
    assert_eq!(read, created);
    assert_eq!(store.approval("apr_nope").await.unwrap(), None);
}

#[tokio::test]
async fn the_approved_call_runs_once() {
    let (_dir, store) = store().await;
    let a = store
        .create_approval(sample_binding(), T0, TTL)
        .await
        .unwrap();
    assert_eq!(
        store.find_pending(&sample_binding(), at(1)).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.find_usable(&sample_binding(), at(1)).await.unwrap(),
        None
    );
    assert_eq!(
        refusal(
            store
                .consume_approval(&a.id, &sample_binding(), at(1))
                .await
        ),
        Refusal::StillPending
    );

    let approved = store
        .decide_approval(&a.id, BOB, Verdict::Approve, Some("ok".into()), at(2))
        .await
        .unwrap();
    assert_eq!(approved.status, Status::Approved);
    assert_eq!(store.approval(&a.id).await.unwrap(), Some(approved.clone()));
    assert_eq!(
        store.find_pending(&sample_binding(), at(3)).await.unwrap(),
        None
    );
    assert_eq!(
        store.find_usable(&sample_binding(), at(3)).await.unwrap(),
        Some(approved)
    );

    let used = store
        .consume_approval(&a.id, &sample_binding(), at(3))
        .await
        .unwrap();
    assert_eq!(used.status, Status::Used);
    assert_eq!(store.approval(&a.id).await.unwrap(), Some(used));
    assert_eq!(
        refusal(
            store
                .consume_approval(&a.id, &sample_binding(), at(4))
                .await
        ),
        Refusal::Used
    );
    assert_eq!(
        store.find_usable(&sample_binding(), at(4)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn refusals_are_precise() {
    let (_dir, store) = store().await;
    let a = store
        .create_approval(sample_binding(), T0, TTL)
        .await
        .unwrap();
    let decide = |by, verdict, t| store.decide_approval(&a.id, by, verdict, None, t);
    assert_eq!(
        refusal(
            decide(
                Decider {
                    id: "alice",
                    is_approver: true
                },
                Verdict::Approve,
                at(1)
            )
            .await
        ),
        Refusal::SelfApproval
    );
    assert_eq!(
        refusal(
            decide(
                Decider {
                    id: "carol",
                    is_approver: false
                },
                Verdict::Approve,
                at(1)
            )
            .await
        ),
        Refusal::NotApprover
    );
    assert_eq!(
        refusal(
            store
                .decide_approval("apr_0000000000000000", BOB, Verdict::Approve, None, at(1))
                .await
        ),
        Refusal::Unknown
    );
    decide(BOB, Verdict::Approve, at(1)).await.unwrap();
    assert_eq!(
        refusal(decide(BOB, Verdict::Deny, at(2)).await),
        Refusal::NotPending
    );

    let mut other = sample_binding();
    other.args_digest = "b".repeat(64);
    assert_eq!(
        refusal(store.consume_approval(&a.id, &other, at(2)).await),
        Refusal::ArgsMismatch
    );
    let mut other = sample_binding();
    other.manifest_hash = "n".repeat(64);
    assert_eq!(
        refusal(store.consume_approval(&a.id, &other, at(2)).await),
        Refusal::ManifestChanged
    );
    let mut other = sample_binding();
    other.principal = "mallory".into();
    assert_eq!(
        refusal(store.consume_approval(&a.id, &other, at(2)).await),
        Refusal::PrincipalMismatch
    );
    assert_eq!(
        refusal(
            store
                .consume_approval("apr_x", &sample_binding(), at(2))
                .await
        ),
        Refusal::Unknown
    );
    // Expired before use: refused, and nothing was spent.
    assert_eq!(
        refusal(
            store
                .consume_approval(&a.id, &sample_binding(), at(60))
                .await
        ),
        Refusal::Expired
    );
    assert_eq!(
        store.approval(&a.id).await.unwrap().unwrap().status,
        Status::Approved
    );
}

#[tokio::test]
async fn denied_and_expired_approvals_are_not_usable() {
    let (_dir, store) = store().await;
    let denied = store
        .create_approval(sample_binding(), T0, TTL)
        .await
        .unwrap();
    store
        .decide_approval(&denied.id, BOB, Verdict::Deny, Some("no".into()), at(1))
        .await
        .unwrap();
    assert_eq!(
        refusal(
            store
                .consume_approval(&denied.id, &sample_binding(), at(2))
                .await
        ),
        Refusal::Denied
    );
    let late = store
        .create_approval(sample_binding(), at(2), TTL)
        .await
        .unwrap();
    assert_eq!(
        refusal(
            store
                .decide_approval(&late.id, BOB, Verdict::Approve, None, at(62))
                .await
        ),
        Refusal::Expired
    );
    assert_eq!(
        store.find_pending(&sample_binding(), at(62)).await.unwrap(),
        None
    );
    // Recording expiry touches only what is due.
    let fresh = store
        .create_approval(sample_binding(), at(61), TTL)
        .await
        .unwrap();
    assert_eq!(store.expire_approvals(at(62)).await.unwrap(), 1);
    assert_eq!(
        store.approval(&late.id).await.unwrap().unwrap().status,
        Status::Expired
    );
    assert_eq!(
        store.approval(&fresh.id).await.unwrap().unwrap().status,
        Status::Pending
    );
    assert_eq!(
        store.approval(&denied.id).await.unwrap().unwrap().status,
        Status::Denied
    );
}

#[tokio::test]
async fn listing_filters_by_status_newest_first() {
    let (_dir, store) = store().await;
    let first = store
        .create_approval(sample_binding(), at(0), TTL)
        .await
        .unwrap();
    let second = store
        .create_approval(sample_binding(), at(1), TTL)
        .await
        .unwrap();
    let third = store
        .create_approval(sample_binding(), at(2), TTL)
        .await
        .unwrap();
    store
        .decide_approval(&second.id, BOB, Verdict::Approve, None, at(3))
        .await
        .unwrap();
    let ids = |v: Vec<Approval>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_approvals(None, 10).await.unwrap()),
        [third.id.clone(), second.id.clone(), first.id.clone()]
    );
    assert_eq!(
        ids(store
            .list_approvals(Some(Status::Pending), 10)
            .await
            .unwrap()),
        [third.id.clone(), first.id]
    );
    assert_eq!(
        ids(store
            .list_approvals(Some(Status::Approved), 10)
            .await
            .unwrap()),
        [second.id]
    );
    assert_eq!(
        ids(store.list_approvals(None, 1).await.unwrap()),
        [third.id]
    );
}

#[tokio::test]
async fn of_two_concurrent_consumers_exactly_one_wins() {
    let (dir, store) = store().await;
    // A second handle on the same file, as a second gateway process would have.
    let other = dir.reopen().await;
    for round in 0..20 {
        let a = store
            .create_approval(sample_binding(), at(round), TTL)
            .await
            .unwrap();
        store
            .decide_approval(&a.id, BOB, Verdict::Approve, None, at(round))
            .await
            .unwrap();
        let b = sample_binding();
        let (x, y) = tokio::join!(
            store.consume_approval(&a.id, &b, at(round)),
            other.consume_approval(&a.id, &b, at(round)),
        );
        let results = [x, y];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for r in results {
            if let Err(e) = r {
                assert_eq!(refusal::<Approval>(Err(e)), Refusal::Used, "round {round}");
            }
        }
    }
}

#[tokio::test]
async fn of_two_concurrent_deciders_exactly_one_wins() {
    let (dir, store) = store().await;
    let other = dir.reopen().await;
    let a = store
        .create_approval(sample_binding(), T0, TTL)
        .await
        .unwrap();
    let carol = Decider {
        id: "carol",
        is_approver: true,
    };
    let (x, y) = tokio::join!(
        store.decide_approval(&a.id, BOB, Verdict::Approve, None, at(1)),
        other.decide_approval(&a.id, carol, Verdict::Deny, None, at(1)),
    );
    let winner = match (x, y) {
        (Ok(w), Err(e)) | (Err(e), Ok(w)) => {
            assert_eq!(refusal::<Approval>(Err(e)), Refusal::NotPending);
            w
        }
        other => panic!("expected exactly one winner: {other:?}"),
    };
    assert_eq!(store.approval(&a.id).await.unwrap(), Some(winner));
}

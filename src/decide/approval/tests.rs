use std::time::Duration;

use time::macros::datetime;

use super::*;

const T0: OffsetDateTime = datetime!(2026-11-21 10:00:00 UTC);
const TTL: Duration = Duration::from_secs(3600);

fn approval(status: Status) -> Approval {
    Approval {
        status,
        ..Approval::pending("apr_1".into(), sample_binding(), T0, TTL)
    }
}

fn minutes(m: i64) -> OffsetDateTime {
    T0 + time::Duration::minutes(m)
}

#[test]
fn a_new_approval_is_pending_and_expires_after_its_ttl() {
    let a = Approval::pending("apr_1".into(), sample_binding(), T0, TTL);
    assert_eq!(a.status, Status::Pending);
    assert_eq!(a.expires_at, minutes(60));
    assert_eq!(a.binding(), sample_binding());
    assert_eq!(a.effective_status(minutes(59)), Status::Pending);
    assert_eq!(a.effective_status(minutes(60)), Status::Expired);
}

#[test]
fn statuses_round_trip_through_their_names() {
    for s in Status::ALL {
        assert_eq!(Status::parse(s.as_str()), Some(s));
    }
    assert_eq!(Status::parse("Approved"), None);
}

#[test]
fn deciding() {
    struct Case {
        name: &'static str,
        status: Status,
        by: &'static str,
        is_approver: bool,
        at: i64,
        verdict: Verdict,
        expected: Result<Status, Refusal>,
    }
    let case = |name, status, by, is_approver, at, verdict, expected| Case {
        name,
        status,
        by,
        is_approver,
        at,
        verdict,
        expected,
    };
    use Refusal as R;
    use Status as S;
    use Verdict::{Approve, Deny};
    #[rustfmt::skip]
    let cases = [
        case("approve", S::Pending, "bob", true, 1, Approve, Ok(S::Approved)),
        case("deny", S::Pending, "bob", true, 1, Deny, Ok(S::Denied)),
        case("self approval", S::Pending, "alice", true, 1, Approve, Err(R::SelfApproval)),
        case("self denial", S::Pending, "alice", true, 1, Deny, Err(R::SelfApproval)),
        case("no label", S::Pending, "bob", false, 1, Approve, Err(R::NotApprover)),
        case("label checked first", S::Used, "carol", false, 1, Approve, Err(R::NotApprover)),
        case("twice", S::Approved, "bob", true, 1, Approve, Err(R::NotPending)),
        case("after denial", S::Denied, "bob", true, 1, Approve, Err(R::NotPending)),
        case("after use", S::Used, "bob", true, 1, Deny, Err(R::NotPending)),
        case("recorded expired", S::Expired, "bob", true, 1, Approve, Err(R::Expired)),
        case("at expiry", S::Pending, "bob", true, 60, Approve, Err(R::Expired)),
        case("just before expiry", S::Pending, "bob", true, 59, Deny, Ok(S::Denied)),
    ];
    for c in cases {
        let a = approval(c.status);
        let by = Decider {
            id: c.by,
            is_approver: c.is_approver,
        };
        let got = a.decide(by, c.verdict, Some("fine".into()), minutes(c.at));
        match (&got, c.expected) {
            (Ok(d), Ok(status)) => {
                assert_eq!(d.status, status, "{}", c.name);
                assert_eq!(d.decided_by.as_deref(), Some(c.by), "{}", c.name);
                assert_eq!(d.decided_at, Some(minutes(c.at)), "{}", c.name);
                assert_eq!(d.reason.as_deref(), Some("fine"), "{}", c.name);
                assert_eq!(d.binding(), a.binding(), "{}", c.name);
            }
            (Err(r), Err(expected)) => assert_eq!(*r, expected, "{}", c.name),
            _ => panic!("{}: got {got:?}, expected {:?}", c.name, c.expected),
        }
    }
}

#[test]
fn using() {
    let other = |f: fn(&mut Binding)| {
        let mut b = sample_binding();
        f(&mut b);
        b
    };
    use Refusal as R;
    use Status as S;
    type Case = (&'static str, Status, Binding, i64, Result<(), Refusal>);
    #[rustfmt::skip]
    let cases: [Case; 12] = [
        ("identical call", S::Approved, sample_binding(), 1, Ok(())),
        ("pending", S::Pending, sample_binding(), 1, Err(R::StillPending)),
        ("denied", S::Denied, sample_binding(), 1, Err(R::Denied)),
        ("used", S::Used, sample_binding(), 1, Err(R::Used)),
        ("recorded expired", S::Expired, sample_binding(), 1, Err(R::Expired)),
        ("approved, past expiry", S::Approved, sample_binding(), 60, Err(R::Expired)),
        ("other args", S::Approved, other(|b| b.args_digest = "b".repeat(64)), 1, Err(R::ArgsMismatch)),
        ("other tool", S::Approved, other(|b| b.tool = "notes__delete_note".into()), 1, Err(R::ToolMismatch)),
        ("other server", S::Approved, other(|b| b.server = "jira".into()), 1, Err(R::ToolMismatch)),
        ("other principal", S::Approved, other(|b| b.principal = "mallory".into()), 1, Err(R::PrincipalMismatch)),
        ("manifest changed", S::Approved, other(|b| b.manifest_hash = "n".repeat(64)), 1, Err(R::ManifestChanged)),
        ("binding before state", S::Used, other(|b| b.principal = "mallory".into()), 1, Err(R::PrincipalMismatch)),
    ];
    for (name, status, b, at, expected) in cases {
        let a = approval(status);
        assert_eq!(a.check_use(&b, minutes(at)), expected, "{name}");
        match a.consume(&b, minutes(at)) {
            Ok(used) => {
                assert_eq!(expected, Ok(()), "{name}");
                assert_eq!(used.status, S::Used, "{name}");
                assert_eq!(used.used_at, Some(minutes(at)), "{name}");
                // Spent: the same call again is refused.
                assert_eq!(used.check_use(&b, minutes(at)), Err(R::Used), "{name}");
            }
            Err(r) => assert_eq!(Err(r), expected, "{name}"),
        }
    }
}

#[test]
fn refusal_codes_are_stable_and_distinct() {
    use Refusal::*;
    let all = [
        (SelfApproval, "approval_self"),
        (NotApprover, "approval_not_approver"),
        (NotPending, "approval_not_pending"),
        (Expired, "approval_expired"),
        (Used, "approval_used"),
        (Denied, "approval_denied"),
        (StillPending, "approval_pending"),
        (ArgsMismatch, "approval_args_mismatch"),
        (ToolMismatch, "approval_tool_mismatch"),
        (PrincipalMismatch, "approval_principal_mismatch"),
        (ManifestChanged, "approval_manifest_changed"),
        (Unknown, "approval_unknown"),
    ];
    for (r, code) in all {
        assert_eq!(r.code(), code);
        assert!(!r.to_string().is_empty());
    }
    let codes: std::collections::HashSet<_> = all.iter().map(|(r, _)| r.code()).collect();
    assert_eq!(codes.len(), all.len());
}

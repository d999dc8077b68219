//! Random event sequences on every machine: invariants that hold whatever the network and
//! the TU do.

use proptest::prelude::*;
use sip_txn::{Action, Event, Kind, Micros, State, Time, TimerConfig, Transaction, TryingPolicy};

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u16..800).prop_map(Event::Response),
        Just(Event::Request),
        Just(Event::Ack),
        (0u16..800).prop_map(Event::TuResponse),
        Just(Event::Cancelled),
        Just(Event::TransportError),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::InviteClient),
        Just(Kind::NonInviteClient),
        Just(Kind::InviteServer),
        Just(Kind::NonInviteServer),
    ]
}

fn policy() -> impl Strategy<Value = TryingPolicy> {
    prop_oneof![
        Just(TryingPolicy::Immediate),
        Just(TryingPolicy::Never),
        (0u64..1_000).prop_map(|ms| TryingPolicy::After(Micros::from_millis(ms))),
    ]
}

/// Checks one batch of actions and tracks termination.
fn check(actions: &sip_txn::Actions, ended: &mut bool, t: &Transaction, now: Time) {
    if *ended {
        assert!(actions.is_empty(), "actions after the end: {actions:?}");
        return;
    }
    let s = actions.as_slice();
    if let Some(pos) = s.iter().position(|a| *a == Action::Terminated) {
        assert_eq!(pos, s.len() - 1, "Terminated not last: {s:?}");
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.next_deadline(), None);
        *ended = true;
    } else {
        assert_ne!(t.state(), State::Terminated);
    }
    if let Some(d) = t.next_deadline() {
        assert!(d > now, "overdue timer left: {d:?} at {now:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn machines_keep_their_invariants(
        kind in kind(),
        reliable in any::<bool>(),
        trying in policy(),
        t1_ms in 0u64..2_000,
        t2_ms in 0u64..8_000,
        t4_ms in 0u64..10_000,
        steps in proptest::collection::vec((0u64..40_000, event(), any::<bool>()), 0..40),
    ) {
        let cfg = TimerConfig {
            trying,
            t1: Micros::from_millis(t1_ms),
            t2: Micros::from_millis(t2_ms),
            t4: Micros::from_millis(t4_ms),
            ..TimerConfig::default()
        };
        let mut now = Time(0);
        let (mut t, first) = Transaction::new(kind, now, &cfg, reliable);
        let mut ended = false;
        check(&first, &mut ended, &t, now);
        for (dt_ms, ev, timer_first) in steps {
            now = now + Micros::from_millis(dt_ms);
            if timer_first {
                let a = t.on_timer(now);
                check(&a, &mut ended, &t, now);
            }
            let a = t.on_event(now, ev);
            check(&a, &mut ended, &t, now);
        }
        // Whatever happened, a final answer and the timers end every transaction.
        let fin = if kind.is_client() { Event::Response(500) } else { Event::TuResponse(500) };
        let a = t.on_event(now, fin);
        check(&a, &mut ended, &t, now);
        let mut rounds = 0;
        while let Some(d) = t.next_deadline() {
            now = d;
            let a = t.on_timer(now);
            check(&a, &mut ended, &t, now);
            rounds += 1;
            prop_assert!(rounds < 10_000);
        }
        prop_assert!(ended, "{kind:?} stuck in {:?}", t.state());
    }
}

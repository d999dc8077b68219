//! Non-INVITE server transaction, RFC 3261 figure 8, row by row on a virtual clock.

use sip_txn::{Action, Event, NonInviteServer, Outgoing, State, Time, TimerConfig, TimerId};

const fn ms(v: u64) -> Time {
    Time(v * 1_000)
}

const RESEND: Action = Action::Send(Outgoing::LastResponse);

fn udp() -> NonInviteServer {
    let (t, a) = NonInviteServer::new(ms(0), &TimerConfig::default(), false);
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    t
}

#[test]
fn trying_absorbs_retransmissions() {
    let mut t = udp();
    assert_eq!(t.state(), State::Trying);
    // Only the guard (not in the RFC) runs.
    assert_eq!(t.next_deadline(), Some(ms(300_000)));
    assert!(t.on_event(ms(500), Event::Request).is_empty());
    assert_eq!(t.state(), State::Trying);
    // Nothing sent yet: a transport error has nothing to report.
    assert!(t.on_event(ms(500), Event::TransportError).is_empty());
}

#[test]
fn trying_1xx_to_proceeding() {
    let mut t = udp();
    assert_eq!(
        t.on_event(ms(10), Event::TuResponse(100)).as_slice(),
        &[RESEND]
    );
    assert_eq!(t.state(), State::Proceeding);
    assert_eq!(
        t.on_event(ms(20), Event::TuResponse(183)).as_slice(),
        &[RESEND]
    );
    // Retransmission: the last provisional again.
    assert_eq!(t.on_event(ms(500), Event::Request).as_slice(), &[RESEND]);
}

#[test]
fn proceeding_final_to_completed_timer_j_64_t1() {
    let mut t = udp();
    t.on_event(ms(10), Event::TuResponse(100));
    assert_eq!(
        t.on_event(ms(1_000), Event::TuResponse(200)).as_slice(),
        &[RESEND]
    );
    assert_eq!(t.state(), State::Completed);
    assert_eq!(t.timer(TimerId::J), Some(ms(33_000)));
    // Retransmission: the final again; further TU responses discarded.
    assert_eq!(t.on_event(ms(1_500), Event::Request).as_slice(), &[RESEND]);
    assert!(t.on_event(ms(1_500), Event::TuResponse(500)).is_empty());
    assert!(t.on_event(ms(1_500), Event::TuResponse(180)).is_empty());
    assert!(t.on_timer(ms(32_999)).is_empty());
    assert_eq!(t.on_timer(ms(33_000)).as_slice(), &[Action::Terminated]);
    assert_eq!(t.state(), State::Terminated);
}

#[test]
fn trying_final_to_completed() {
    for s in [200, 202, 401, 481, 503, 699] {
        let mut t = udp();
        assert_eq!(
            t.on_event(ms(5), Event::TuResponse(s)).as_slice(),
            &[RESEND]
        );
        assert_eq!(t.state(), State::Completed);
        assert_eq!(t.timer(TimerId::J), Some(ms(32_005)));
    }
}

#[test]
fn transport_errors() {
    let mut t = udp();
    t.on_event(ms(5), Event::TuResponse(100));
    assert_eq!(
        t.on_event(ms(6), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    let mut t = udp();
    t.on_event(ms(5), Event::TuResponse(200));
    assert_eq!(
        t.on_event(ms(6), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
}

#[test]
fn reliable_zero_timer_j() {
    let (mut t, _) = NonInviteServer::new(ms(0), &TimerConfig::default(), true);
    assert_eq!(
        t.on_event(ms(5), Event::TuResponse(200)).as_slice(),
        &[RESEND, Action::Terminated]
    );
    assert_eq!(t.state(), State::Terminated);
}

#[test]
fn client_side_events_are_ignored() {
    let mut t = udp();
    for ev in [Event::Response(200), Event::Ack, Event::Cancelled] {
        assert!(t.on_event(ms(1), ev).is_empty());
    }
    assert!(t.on_event(ms(1), Event::TuResponse(99)).is_empty());
    assert!(t.on_event(ms(1), Event::TuResponse(700)).is_empty());
    assert_eq!(t.state(), State::Trying);
}

#[test]
fn guard_ends_a_transaction_the_tu_forgot() {
    let mut t = udp();
    assert_eq!(
        t.on_timer(ms(300_000)).as_slice(),
        &[Action::Timeout(TimerId::Guard), Action::Terminated]
    );
    let mut t = udp();
    t.on_event(ms(10), Event::TuResponse(100));
    assert_eq!(
        t.on_timer(ms(300_000)).as_slice(),
        &[Action::Timeout(TimerId::Guard), Action::Terminated]
    );
    let mut t = udp();
    t.on_event(ms(10), Event::TuResponse(200));
    assert_eq!(t.timer(TimerId::Guard), None);
    assert_eq!(t.next_deadline(), Some(ms(32_010)));
}

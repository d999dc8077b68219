//! INVITE server transaction, RFC 3261 figure 7 as amended by RFC 6026 figure 7, row by row
//! on a virtual clock.

use sip_txn::{
    Action, Event, InviteServer, Micros, Outgoing, State, Time, TimerConfig, TimerId, TryingPolicy,
};

const fn ms(v: u64) -> Time {
    Time(v * 1_000)
}

fn udp(at: Time) -> InviteServer {
    let (t, a) = InviteServer::new(at, &TimerConfig::default(), false);
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    t
}

fn with_policy(p: TryingPolicy, reliable: bool) -> (InviteServer, Vec<Action>) {
    let c = TimerConfig {
        trying: p,
        ..TimerConfig::default()
    };
    let (t, a) = InviteServer::new(ms(0), &c, reliable);
    (t, a.as_slice().to_vec())
}

const RESEND: Action = Action::Send(Outgoing::LastResponse);
const TRYING: Action = Action::Send(Outgoing::Trying);

#[test]
fn trying_after_200ms_when_tu_is_silent() {
    let mut t = udp(ms(0));
    assert_eq!(t.state(), State::Proceeding);
    assert_eq!(t.timer(TimerId::Trying), Some(ms(200)));
    assert!(t.on_timer(ms(199)).is_empty());
    assert_eq!(t.on_timer(ms(200)).as_slice(), &[TRYING]);
    // Only the guard is left.
    assert_eq!(t.next_deadline(), Some(ms(300_000)));
    // A retransmitted INVITE gets the 100 again.
    assert_eq!(t.on_event(ms(500), Event::Request).as_slice(), &[TRYING]);
}

#[test]
fn no_trying_when_tu_answers_within_200ms() {
    let mut t = udp(ms(0));
    assert_eq!(
        t.on_event(ms(50), Event::TuResponse(180)).as_slice(),
        &[RESEND]
    );
    assert_eq!(t.timer(TimerId::Trying), None);
    assert!(t.on_timer(ms(200)).is_empty());
    // Retransmission: most recent provisional.
    assert_eq!(t.on_event(ms(500), Event::Request).as_slice(), &[RESEND]);
    assert_eq!(t.state(), State::Proceeding);
}

#[test]
fn retransmission_before_200ms_sends_trying_at_once() {
    let mut t = udp(ms(0));
    assert_eq!(t.on_event(ms(100), Event::Request).as_slice(), &[TRYING]);
    assert_eq!(t.timer(TimerId::Trying), None);
}

#[test]
fn trying_immediate_and_never() {
    let (mut t, a) = with_policy(TryingPolicy::Immediate, false);
    assert_eq!(a, vec![Action::ToTu, TRYING]);
    assert_eq!(t.timer(TimerId::Trying), None);
    assert_eq!(t.on_event(ms(500), Event::Request).as_slice(), &[TRYING]);
    let (mut t, a) = with_policy(TryingPolicy::Never, false);
    assert_eq!(a, vec![Action::ToTu]);
    assert_eq!(t.timer(TimerId::Trying), None);
    assert!(t.on_event(ms(500), Event::Request).is_empty());
    let (t, _) = with_policy(TryingPolicy::After(Micros::from_millis(50)), false);
    assert_eq!(t.timer(TimerId::Trying), Some(ms(50)));
}

#[test]
fn proceeding_1xx_from_tu_sent_each_time() {
    let mut t = udp(ms(0));
    for s in [100, 180, 183] {
        assert_eq!(
            t.on_event(ms(10), Event::TuResponse(s)).as_slice(),
            &[RESEND]
        );
        assert_eq!(t.state(), State::Proceeding);
    }
}

#[test]
fn proceeding_non2xx_to_completed_timer_g_doubles_to_t2_timer_h_64_t1() {
    let mut t = udp(ms(0));
    t.on_event(ms(0), Event::TuResponse(180));
    let a = t.on_event(ms(1_000), Event::TuResponse(486));
    assert_eq!(a.as_slice(), &[RESEND]);
    assert_eq!(t.state(), State::Completed);
    assert_eq!(t.timer(TimerId::G), Some(ms(1_500)));
    assert_eq!(t.timer(TimerId::H), Some(ms(33_000)));
    let mut sends = Vec::new();
    let now = loop {
        let now = t.next_deadline().expect("armed");
        let a = t.on_timer(now);
        if a.is_terminated() {
            assert_eq!(
                a.as_slice(),
                &[Action::Timeout(TimerId::H), Action::Terminated]
            );
            break now;
        }
        assert_eq!(a.as_slice(), &[RESEND]);
        sends.push(now.as_micros() / 1_000 - 1_000);
    };
    assert_eq!(now, ms(33_000));
    // Relative to the final response: 500, 1000, 2000, 4000, 4000, ...
    assert_eq!(
        sends,
        vec![
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
}

#[test]
fn completed_retransmission_resends_final() {
    let mut t = udp(ms(0));
    t.on_event(ms(0), Event::TuResponse(404));
    assert_eq!(t.on_event(ms(100), Event::Request).as_slice(), &[RESEND]);
    assert_eq!(t.state(), State::Completed);
    // The TU's further responses are discarded.
    assert!(t.on_event(ms(100), Event::TuResponse(500)).is_empty());
    assert!(t.on_event(ms(100), Event::TuResponse(200)).is_empty());
}

#[test]
fn completed_ack_to_confirmed_timer_i_is_t4() {
    let mut t = udp(ms(0));
    t.on_event(ms(0), Event::TuResponse(486));
    let a = t.on_event(ms(300), Event::Ack);
    assert!(a.is_empty());
    assert_eq!(t.state(), State::Confirmed);
    assert_eq!(t.timer(TimerId::G), None);
    assert_eq!(t.timer(TimerId::H), None);
    assert_eq!(t.timer(TimerId::I), Some(ms(5_300)));
    // Confirmed absorbs ACK and INVITE copies.
    assert!(t.on_event(ms(400), Event::Ack).is_empty());
    assert!(t.on_event(ms(400), Event::Request).is_empty());
    assert!(t.on_timer(ms(5_299)).is_empty());
    assert_eq!(t.on_timer(ms(5_300)).as_slice(), &[Action::Terminated]);
}

#[test]
fn proceeding_2xx_to_accepted_timer_l_64_t1() {
    let mut t = udp(ms(0));
    let a = t.on_event(ms(2_000), Event::TuResponse(200));
    assert_eq!(a.as_slice(), &[RESEND]);
    assert_eq!(t.state(), State::Accepted);
    assert_eq!(t.timer(TimerId::Trying), None);
    assert_eq!(t.timer(TimerId::L), Some(ms(34_000)));
    // INVITE retransmission absorbed (the TU retransmits the 2xx itself).
    assert!(t.on_event(ms(2_500), Event::Request).is_empty());
    // ACK (of the 2xx, when it matches) goes to the TU.
    assert_eq!(
        t.on_event(ms(2_600), Event::Ack).as_slice(),
        &[Action::ToTu]
    );
    // The TU's 2xx retransmissions go out through the transaction.
    assert_eq!(
        t.on_event(ms(2_700), Event::TuResponse(200)).as_slice(),
        &[RESEND]
    );
    // Non-2xx from TU in Accepted: discarded.
    assert!(t.on_event(ms(2_700), Event::TuResponse(500)).is_empty());
    // Transport error in Accepted: TU informed, state kept.
    assert_eq!(
        t.on_event(ms(2_800), Event::TransportError).as_slice(),
        &[Action::TransportError]
    );
    assert_eq!(t.state(), State::Accepted);
    assert!(t.on_timer(ms(33_999)).is_empty());
    assert_eq!(t.on_timer(ms(34_000)).as_slice(), &[Action::Terminated]);
}

#[test]
fn transport_errors() {
    let mut t = udp(ms(0));
    assert_eq!(
        t.on_event(ms(1), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    let mut t = udp(ms(0));
    t.on_event(ms(1), Event::TuResponse(404));
    assert_eq!(
        t.on_event(ms(2), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    // Confirmed: nothing is sent any more.
    let mut t = udp(ms(0));
    t.on_event(ms(1), Event::TuResponse(404));
    t.on_event(ms(2), Event::Ack);
    assert!(t.on_event(ms(3), Event::TransportError).is_empty());
}

#[test]
fn ack_in_proceeding_is_ignored() {
    let mut t = udp(ms(0));
    assert!(t.on_event(ms(1), Event::Ack).is_empty());
    assert_eq!(t.state(), State::Proceeding);
    assert!(t.on_event(ms(1), Event::Response(200)).is_empty());
    assert!(t.on_event(ms(1), Event::Cancelled).is_empty());
}

#[test]
fn reliable_no_timer_g_and_zero_timer_i() {
    let (mut t, _) = with_policy(TryingPolicy::After(Micros::from_millis(200)), true);
    t.on_event(ms(0), Event::TuResponse(603));
    assert_eq!(t.state(), State::Completed);
    assert_eq!(t.timer(TimerId::G), None);
    assert_eq!(t.timer(TimerId::H), Some(ms(32_000)));
    assert_eq!(
        t.on_event(ms(10), Event::Ack).as_slice(),
        &[Action::Terminated]
    );
}

#[test]
fn reliable_timer_h_and_l() {
    let (mut t, _) = with_policy(TryingPolicy::After(Micros::from_millis(200)), true);
    t.on_event(ms(0), Event::TuResponse(603));
    assert_eq!(
        t.on_timer(ms(32_000)).as_slice(),
        &[Action::Timeout(TimerId::H), Action::Terminated]
    );
    let (mut t, _) = with_policy(TryingPolicy::After(Micros::from_millis(200)), true);
    t.on_event(ms(0), Event::TuResponse(200));
    assert_eq!(t.timer(TimerId::L), Some(ms(32_000)));
}

#[test]
fn guard_ends_a_transaction_the_tu_forgot() {
    let mut t = udp(ms(0));
    t.on_event(ms(10), Event::TuResponse(180));
    assert_eq!(t.timer(TimerId::Guard), Some(ms(300_000)));
    assert_eq!(
        t.on_timer(ms(300_000)).as_slice(),
        &[Action::Timeout(TimerId::Guard), Action::Terminated]
    );
    // A final answer disarms it.
    let mut t = udp(ms(0));
    t.on_event(ms(10), Event::TuResponse(200));
    assert_eq!(t.timer(TimerId::Guard), None);
    // And it can be switched off.
    let c = TimerConfig {
        server_guard: None,
        trying: TryingPolicy::Never,
        ..TimerConfig::default()
    };
    let (t, _) = InviteServer::new(ms(0), &c, false);
    assert_eq!(t.next_deadline(), None);
}

//! INVITE client transaction, RFC 3261 figure 5 as amended by RFC 6026 figure 5, row by row
//! on a virtual clock.

use sip_txn::{Action, Event, InviteClient, Micros, Outgoing, State, Time, TimerConfig, TimerId};

const fn ms(v: u64) -> Time {
    Time(v * 1_000)
}

fn cfg() -> TimerConfig {
    TimerConfig::default()
}

fn udp(at: Time) -> InviteClient {
    let (t, a) = InviteClient::new(at, &cfg(), false);
    assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Request)]);
    t
}

#[test]
fn start_unreliable_arms_a_and_b() {
    let t = udp(ms(0));
    assert_eq!(t.state(), State::Calling);
    assert_eq!(t.timer(TimerId::A), Some(ms(500)));
    assert_eq!(t.timer(TimerId::B), Some(ms(32_000)));
    assert_eq!(t.next_deadline(), Some(ms(500)));
}

#[test]
fn calling_timer_a_doubles_without_cap_then_timer_b_at_64_t1() {
    let mut t = udp(ms(0));
    let mut sends = Vec::new();
    let mut now = ms(0);
    loop {
        let next = t.next_deadline().expect("armed");
        assert!(next >= now);
        now = next;
        let a = t.on_timer(now);
        if a.is_terminated() {
            assert_eq!(
                a.as_slice(),
                &[Action::Timeout(TimerId::B), Action::Terminated]
            );
            break;
        }
        assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Request)]);
        sends.push(now.as_micros() / 1_000);
    }
    // Intervals 500, 1000, 2000, 4000, 8000, 16000 (no T2 cap for INVITE).
    assert_eq!(sends, vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert_eq!(now, ms(32_000));
    assert_eq!(t.state(), State::Terminated);
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn timer_b_override_is_the_fr_timeout() {
    let c = TimerConfig {
        timer_b: Some(Micros::from_secs(4)),
        ..cfg()
    };
    let (mut t, _) = InviteClient::new(ms(0), &c, false);
    assert_eq!(t.timer(TimerId::B), Some(ms(4_000)));
    // A retransmits at 500, 1500, 3500; B ends it at 4 s.
    for at in [500, 1_500, 3_500] {
        assert_eq!(
            t.on_timer(ms(at)).as_slice(),
            &[Action::Send(Outgoing::Request)]
        );
    }
    let a = t.on_timer(ms(4_000));
    assert_eq!(
        a.as_slice(),
        &[Action::Timeout(TimerId::B), Action::Terminated]
    );
}

#[test]
fn timers_scale_with_t1() {
    let c = TimerConfig {
        t1: Micros::from_millis(100),
        ..cfg()
    };
    let (t, _) = InviteClient::new(ms(0), &c, false);
    assert_eq!(t.timer(TimerId::A), Some(ms(100)));
    assert_eq!(t.timer(TimerId::B), Some(ms(6_400)));
}

#[test]
fn calling_1xx_to_proceeding_stops_retransmissions() {
    let mut t = udp(ms(0));
    let a = t.on_event(ms(100), Event::Response(180));
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    assert_eq!(t.state(), State::Proceeding);
    assert_eq!(t.timer(TimerId::A), None);
    assert_eq!(t.timer(TimerId::B), None);
    // Timer C (proxy, default 180 s) is the only timer.
    assert_eq!(t.timer(TimerId::C), Some(ms(180_100)));
    // No retransmission at 500 ms.
    assert!(t.on_timer(ms(500)).is_empty());
}

#[test]
fn proceeding_1xx_to_tu_and_restarts_timer_c() {
    let mut t = udp(ms(0));
    t.on_event(ms(100), Event::Response(100));
    let a = t.on_event(ms(2_000), Event::Response(183));
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    assert_eq!(t.state(), State::Proceeding);
    assert_eq!(t.timer(TimerId::C), Some(ms(182_000)));
}

#[test]
fn calling_2xx_to_accepted_then_timer_m() {
    let mut t = udp(ms(0));
    let a = t.on_event(ms(200), Event::Response(200));
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    assert_eq!(t.state(), State::Accepted);
    assert_eq!(t.timer(TimerId::A), None);
    assert_eq!(t.timer(TimerId::B), None);
    assert_eq!(t.timer(TimerId::M), Some(ms(32_200)));
    // RFC 6026: further 2xx (retransmissions, other forks) go to the TU.
    assert_eq!(
        t.on_event(ms(1_000), Event::Response(200)).as_slice(),
        &[Action::ToTu]
    );
    assert_eq!(t.state(), State::Accepted);
    // Non-2xx in Accepted: dropped.
    assert!(t.on_event(ms(1_000), Event::Response(486)).is_empty());
    assert!(t.on_timer(ms(32_199)).is_empty());
    assert_eq!(t.on_timer(ms(32_200)).as_slice(), &[Action::Terminated]);
    assert_eq!(t.state(), State::Terminated);
}

#[test]
fn proceeding_2xx_to_accepted() {
    let mut t = udp(ms(0));
    t.on_event(ms(100), Event::Response(180));
    let a = t.on_event(ms(5_000), Event::Response(200));
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    assert_eq!(t.state(), State::Accepted);
    assert_eq!(t.timer(TimerId::C), None);
    assert_eq!(t.timer(TimerId::M), Some(ms(37_000)));
}

#[test]
fn calling_non2xx_final_acks_and_completes_timer_d_32s() {
    let mut t = udp(ms(0));
    let a = t.on_event(ms(300), Event::Response(486));
    assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Ack), Action::ToTu]);
    assert_eq!(t.state(), State::Completed);
    assert_eq!(t.timer(TimerId::D), Some(ms(32_300)));
    assert_eq!(t.timer(TimerId::A), None);
    assert_eq!(t.timer(TimerId::B), None);
    // Retransmitted final: ACK again, not to the TU.
    assert_eq!(
        t.on_event(ms(800), Event::Response(486)).as_slice(),
        &[Action::Send(Outgoing::Ack)]
    );
    // 2xx/1xx in Completed: ignored.
    assert!(t.on_event(ms(900), Event::Response(200)).is_empty());
    assert!(t.on_event(ms(900), Event::Response(180)).is_empty());
    assert_eq!(t.on_timer(ms(32_300)).as_slice(), &[Action::Terminated]);
}

#[test]
fn proceeding_non2xx_final_to_completed() {
    for status in [300, 404, 487, 503, 603, 699] {
        let mut t = udp(ms(0));
        t.on_event(ms(100), Event::Response(180));
        let a = t.on_event(ms(1_000), Event::Response(status));
        assert_eq!(
            a.as_slice(),
            &[Action::Send(Outgoing::Ack), Action::ToTu],
            "{status}"
        );
        assert_eq!(t.state(), State::Completed);
        assert_eq!(t.timer(TimerId::D), Some(ms(33_000)));
    }
}

#[test]
fn transport_errors() {
    // Calling.
    let mut t = udp(ms(0));
    assert_eq!(
        t.on_event(ms(1), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    // Completed.
    let mut t = udp(ms(0));
    t.on_event(ms(1), Event::Response(404));
    assert_eq!(
        t.on_event(ms(2), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    // Proceeding.
    let mut t = udp(ms(0));
    t.on_event(ms(1), Event::Response(180));
    assert_eq!(
        t.on_event(ms(2), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    // Accepted: nothing is sent by the transaction, nothing to report.
    let mut t = udp(ms(0));
    t.on_event(ms(1), Event::Response(200));
    assert!(t.on_event(ms(2), Event::TransportError).is_empty());
    assert_eq!(t.state(), State::Accepted);
}

#[test]
fn reliable_no_timer_a_and_zero_timer_d() {
    let (mut t, a) = InviteClient::new(ms(0), &cfg(), true);
    assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Request)]);
    assert_eq!(t.timer(TimerId::A), None);
    assert_eq!(t.timer(TimerId::B), Some(ms(32_000)));
    let a = t.on_event(ms(50), Event::Response(404));
    assert_eq!(
        a.as_slice(),
        &[
            Action::Send(Outgoing::Ack),
            Action::ToTu,
            Action::Terminated
        ]
    );
    assert_eq!(t.state(), State::Terminated);
}

#[test]
fn reliable_timer_b_still_runs() {
    let (mut t, _) = InviteClient::new(ms(0), &cfg(), true);
    assert!(t.on_timer(ms(31_999)).is_empty());
    assert_eq!(
        t.on_timer(ms(32_000)).as_slice(),
        &[Action::Timeout(TimerId::B), Action::Terminated]
    );
}

#[test]
fn reliable_accepted_keeps_timer_m() {
    let (mut t, _) = InviteClient::new(ms(0), &cfg(), true);
    t.on_event(ms(10), Event::Response(200));
    assert_eq!(t.timer(TimerId::M), Some(ms(32_010)));
}

#[test]
fn timer_c_fires_then_gives_up_after_64_t1() {
    let c = TimerConfig {
        timer_c: Some(Micros::from_secs(60)),
        ..cfg()
    };
    let (mut t, _) = InviteClient::new(ms(0), &c, false);
    t.on_event(ms(1_000), Event::Response(180));
    assert_eq!(t.timer(TimerId::C), Some(ms(61_000)));
    let a = t.on_timer(ms(61_000));
    assert_eq!(a.as_slice(), &[Action::Timeout(TimerId::C)]);
    assert_eq!(t.state(), State::Proceeding);
    assert_eq!(t.timer(TimerId::B), Some(ms(93_000)));
    // The TU cancels; the 487 ends it normally.
    t.on_event(ms(61_001), Event::Cancelled);
    assert_eq!(t.timer(TimerId::B), Some(ms(93_000)));
    let a = t.on_event(ms(61_100), Event::Response(487));
    assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Ack), Action::ToTu]);
}

#[test]
fn timer_c_then_silence_times_out() {
    let c = TimerConfig {
        timer_c: Some(Micros::from_secs(60)),
        ..cfg()
    };
    let (mut t, _) = InviteClient::new(ms(0), &c, false);
    t.on_event(ms(0), Event::Response(180));
    t.on_timer(ms(60_000));
    assert_eq!(
        t.on_timer(ms(92_000)).as_slice(),
        &[Action::Timeout(TimerId::B), Action::Terminated]
    );
}

#[test]
fn no_timer_c_when_disabled() {
    let c = TimerConfig {
        timer_c: None,
        ..cfg()
    };
    let (mut t, _) = InviteClient::new(ms(0), &c, false);
    t.on_event(ms(0), Event::Response(180));
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn cancel_in_proceeding_bounds_the_wait() {
    let mut t = udp(ms(0));
    t.on_event(ms(100), Event::Response(180));
    let a = t.on_event(ms(10_000), Event::Cancelled);
    assert!(a.is_empty());
    assert_eq!(t.timer(TimerId::C), None);
    assert_eq!(t.timer(TimerId::B), Some(ms(42_000)));
    assert_eq!(
        t.on_timer(ms(42_000)).as_slice(),
        &[Action::Timeout(TimerId::B), Action::Terminated]
    );
}

#[test]
fn cancel_in_calling_waits_for_provisional() {
    let mut t = udp(ms(0));
    assert!(t.on_event(ms(100), Event::Cancelled).is_empty());
    // Still retransmitting, Timer B unchanged.
    assert_eq!(t.timer(TimerId::B), Some(ms(32_000)));
    t.on_event(ms(700), Event::Response(100));
    assert_eq!(t.timer(TimerId::C), None);
    assert_eq!(t.timer(TimerId::B), Some(ms(32_700)));
}

#[test]
fn server_side_events_are_ignored() {
    let mut t = udp(ms(0));
    for ev in [Event::Request, Event::Ack, Event::TuResponse(200)] {
        assert!(t.on_event(ms(1), ev).is_empty());
        assert_eq!(t.state(), State::Calling);
    }
    // Out-of-range status codes are ignored.
    assert!(t.on_event(ms(1), Event::Response(99)).is_empty());
    assert!(t.on_event(ms(1), Event::Response(700)).is_empty());
    assert_eq!(t.state(), State::Calling);
}

#[test]
fn late_driver_fires_everything_due_once() {
    // The driver wakes at 40 s: A is due and B is due; B wins (ends the transaction),
    // after one retransmission for the overdue A.
    let mut t = udp(ms(0));
    let a = t.on_timer(ms(40_000));
    assert_eq!(
        a.as_slice(),
        &[
            Action::Send(Outgoing::Request),
            Action::Timeout(TimerId::B),
            Action::Terminated
        ]
    );
}

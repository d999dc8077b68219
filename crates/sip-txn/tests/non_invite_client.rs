//! Non-INVITE client transaction, RFC 3261 figure 6, row by row on a virtual clock.

use sip_txn::{
    Action, Event, Micros, NonInviteClient, Outgoing, State, Time, TimerConfig, TimerId,
};

const fn ms(v: u64) -> Time {
    Time(v * 1_000)
}

fn udp(at: Time) -> NonInviteClient {
    let (t, a) = NonInviteClient::new(at, &TimerConfig::default(), false);
    assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Request)]);
    t
}

/// Runs the machine's timers until it ends, returning the retransmission times in ms.
fn drive(t: &mut NonInviteClient, from: Time) -> (Vec<u64>, Time, Vec<Action>) {
    let mut now = from;
    let mut sends = Vec::new();
    loop {
        let Some(next) = t.next_deadline() else {
            return (sends, now, Vec::new());
        };
        now = next;
        let a = t.on_timer(now);
        if a.is_terminated() {
            return (sends, now, a.as_slice().to_vec());
        }
        assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Request)]);
        sends.push(now.as_micros() / 1_000);
    }
}

#[test]
fn start_arms_e_and_f() {
    let t = udp(ms(0));
    assert_eq!(t.state(), State::Trying);
    assert_eq!(t.timer(TimerId::E), Some(ms(500)));
    assert_eq!(t.timer(TimerId::F), Some(ms(32_000)));
}

#[test]
fn trying_timer_e_doubles_capped_at_t2_then_timer_f() {
    let mut t = udp(ms(0));
    let (sends, end, last) = drive(&mut t, ms(0));
    // 500, 1000, 2000, 4000, 4000, ... (capped at T2 = 4 s).
    assert_eq!(
        sends,
        vec![
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(end, ms(32_000));
    assert_eq!(last, vec![Action::Timeout(TimerId::F), Action::Terminated]);
}

#[test]
fn trying_1xx_to_proceeding_then_timer_e_at_t2() {
    let mut t = udp(ms(0));
    assert_eq!(
        t.on_timer(ms(500)).as_slice(),
        &[Action::Send(Outgoing::Request)]
    );
    let a = t.on_event(ms(600), Event::Response(100));
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    assert_eq!(t.state(), State::Proceeding);
    // E is still armed (1500); when it fires in Proceeding the interval is T2.
    assert_eq!(t.timer(TimerId::E), Some(ms(1_500)));
    assert_eq!(
        t.on_timer(ms(1_500)).as_slice(),
        &[Action::Send(Outgoing::Request)]
    );
    assert_eq!(t.timer(TimerId::E), Some(ms(5_500)));
    assert_eq!(
        t.on_timer(ms(5_500)).as_slice(),
        &[Action::Send(Outgoing::Request)]
    );
    assert_eq!(t.timer(TimerId::E), Some(ms(9_500)));
    // Proceeding + 1xx: to TU.
    assert_eq!(
        t.on_event(ms(6_000), Event::Response(180)).as_slice(),
        &[Action::ToTu]
    );
    // Timer F still ends it.
    let (_, end, last) = drive(&mut t, ms(6_000));
    assert_eq!(end, ms(32_000));
    assert_eq!(last, vec![Action::Timeout(TimerId::F), Action::Terminated]);
}

#[test]
fn trying_final_to_completed_timer_k_is_t4() {
    for status in [200, 202, 404, 500, 699] {
        let mut t = udp(ms(0));
        let a = t.on_event(ms(100), Event::Response(status));
        assert_eq!(a.as_slice(), &[Action::ToTu]);
        assert_eq!(t.state(), State::Completed);
        assert_eq!(t.timer(TimerId::E), None);
        assert_eq!(t.timer(TimerId::F), None);
        assert_eq!(t.timer(TimerId::K), Some(ms(5_100)));
        // Retransmitted responses are absorbed.
        assert!(t.on_event(ms(200), Event::Response(status)).is_empty());
        assert!(t.on_event(ms(200), Event::Response(100)).is_empty());
        assert!(t.on_timer(ms(5_099)).is_empty());
        assert_eq!(t.on_timer(ms(5_100)).as_slice(), &[Action::Terminated]);
    }
}

#[test]
fn proceeding_final_to_completed() {
    let mut t = udp(ms(0));
    t.on_event(ms(100), Event::Response(100));
    let a = t.on_event(ms(2_000), Event::Response(200));
    assert_eq!(a.as_slice(), &[Action::ToTu]);
    assert_eq!(t.state(), State::Completed);
    assert_eq!(t.timer(TimerId::K), Some(ms(7_000)));
}

#[test]
fn proceeding_timer_f() {
    let mut t = udp(ms(0));
    t.on_event(ms(100), Event::Response(100));
    let (_, end, last) = drive(&mut t, ms(100));
    assert_eq!(end, ms(32_000));
    assert_eq!(last, vec![Action::Timeout(TimerId::F), Action::Terminated]);
}

#[test]
fn transport_errors() {
    let mut t = udp(ms(0));
    assert_eq!(
        t.on_event(ms(1), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    let mut t = udp(ms(0));
    t.on_event(ms(1), Event::Response(183));
    assert_eq!(
        t.on_event(ms(2), Event::TransportError).as_slice(),
        &[Action::TransportError, Action::Terminated]
    );
    // Completed: nothing more is sent, nothing to report.
    let mut t = udp(ms(0));
    t.on_event(ms(1), Event::Response(200));
    assert!(t.on_event(ms(2), Event::TransportError).is_empty());
}

#[test]
fn reliable_no_timer_e_and_zero_timer_k() {
    let (mut t, a) = NonInviteClient::new(ms(0), &TimerConfig::default(), true);
    assert_eq!(a.as_slice(), &[Action::Send(Outgoing::Request)]);
    assert_eq!(t.timer(TimerId::E), None);
    assert_eq!(t.timer(TimerId::F), Some(ms(32_000)));
    let a = t.on_event(ms(40), Event::Response(200));
    assert_eq!(a.as_slice(), &[Action::ToTu, Action::Terminated]);
}

#[test]
fn reliable_timer_f() {
    let (mut t, _) = NonInviteClient::new(ms(0), &TimerConfig::default(), true);
    assert_eq!(
        t.on_timer(ms(32_000)).as_slice(),
        &[Action::Timeout(TimerId::F), Action::Terminated]
    );
}

#[test]
fn timer_f_override_and_t1_scaling() {
    let c = TimerConfig {
        timer_f: Some(Micros::from_secs(2)),
        ..TimerConfig::default()
    };
    let (t, _) = NonInviteClient::new(ms(0), &c, false);
    assert_eq!(t.timer(TimerId::F), Some(ms(2_000)));
    let c = TimerConfig {
        t1: Micros::from_millis(250),
        t2: Micros::from_millis(1_000),
        ..TimerConfig::default()
    };
    let (mut t, _) = NonInviteClient::new(ms(0), &c, false);
    assert_eq!(t.timer(TimerId::F), Some(ms(16_000)));
    let (sends, end, _) = drive(&mut t, ms(0));
    assert_eq!(&sends[..5], &[250, 750, 1_750, 2_750, 3_750]);
    assert_eq!(end, ms(16_000));
}

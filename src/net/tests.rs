//! The user network against the real libslirp: ARP with the virtual
//! gateway, a hostfwd connection arriving as a SYN for the guest, and a
//! hostfwd port that is taken.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use devices::virtio::net::NetBackend;

use super::slirp::SlirpNet;
use crate::config::net::{parse_netdev, DEFAULT_MAC};

const GUEST_IP: [u8; 4] = [10, 0, 2, 15];

fn start(spec: &str) -> (SlirpNet, mpsc::Receiver<Vec<u8>>) {
    let mut net = SlirpNet::start(&parse_netdev(spec).unwrap()).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    net.set_sink(Some(Arc::new(move |f| {
        let _ = tx.lock().unwrap().send(f);
    })));
    (net, rx)
}

/// The first frame `want` accepts (a generous deadline: fail, never hang).
fn expect(rx: &mpsc::Receiver<Vec<u8>>, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("slirp never sent {what}"));
        match rx.recv_timeout(left) {
            Ok(f) if want(&f) => return f,
            Ok(_) => {}
            Err(_) => panic!("slirp never sent {what}"),
        }
    }
}

/// An ARP request from the guest (10.0.2.15, the default MAC) for `ip`.
fn arp_request(ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&DEFAULT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&DEFAULT_MAC);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip);
    f.resize(60, 0);
    f
}

fn is_arp_reply_from(f: &[u8], ip: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2] && f[28..32] == ip
}

#[test]
fn the_gateway_answers_arp() {
    let (mut net, rx) = start("user,id=t");
    net.send(&arp_request([10, 0, 2, 2]));
    let r = expect(&rx, "an ARP reply for 10.0.2.2", |f| {
        is_arp_reply_from(f, [10, 0, 2, 2])
    });
    assert_eq!(r[..6], DEFAULT_MAC, "to the guest");
    assert_eq!(r[38..42], GUEST_IP);
    // The DNS address is slirp's too.
    net.send(&arp_request([10, 0, 2, 3]));
    expect(&rx, "an ARP reply for 10.0.2.3", |f| {
        is_arp_reply_from(f, [10, 0, 2, 3])
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_hostfwd_connection_reaches_the_guest_as_a_syn() {
    let port = free_port();
    let (mut net, rx) = start(&format!("user,id=f,hostfwd=tcp::{port}-:8080"));
    // Let slirp learn the guest's MAC, as a real guest's ARP would.
    net.send(&arp_request([10, 0, 2, 2]));
    expect(&rx, "an ARP reply", |f| is_arp_reply_from(f, [10, 0, 2, 2]));
    let _c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let syn = expect(&rx, "a SYN to 10.0.2.15:8080", |f| {
        f.len() >= 54
            && f[12..14] == [8, 0]
            && f[23] == 6
            && f[30..34] == GUEST_IP
            && f[36..38] == 8080u16.to_be_bytes()
            && f[47] & 0x02 != 0
    });
    assert_eq!(syn[..6], DEFAULT_MAC);
    assert_eq!(syn[26..30], [10, 0, 2, 2], "from the gateway's address");
}

#[test]
fn a_taken_hostfwd_port_is_an_error_at_start() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let u = parse_netdev(&format!("user,id=busy,hostfwd=tcp::{port}-:22")).unwrap();
    let e = format!("{:#}", SlirpNet::start(&u).err().expect("refused"));
    assert!(
        e.contains(&format!("cannot listen on 127.0.0.1:{port}")) && e.contains("id=busy"),
        "{e}"
    );
    // The address given is the one bound: another address is free.
    let u = parse_netdev(&format!("user,id=other,hostfwd=tcp:127.0.0.2:{port}-:22")).unwrap();
    drop(SlirpNet::start(&u).unwrap());
}

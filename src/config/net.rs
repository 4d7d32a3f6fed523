//! `-netdev user,...`, `-nic ...` and the network side of `-device
//! virtio-net-pci`: QEMU 7.2's options and defaults for user-mode
//! networking (net 10.0.2.0/24, host 10.0.2.2, DNS 10.0.2.3, DHCP from
//! 10.0.2.15; MAC 52:54:00:12:34:56, the last byte counting up per card).

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

use super::{props, warn, DeviceConfig};

/// One `hostfwd=` rule: connections to `host_addr:host_port` on the host
/// go to `guest_addr:guest_port` in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFwd {
    pub udp: bool,
    pub host_addr: Ipv4Addr,
    pub host_port: u16,
    pub guest_addr: Ipv4Addr,
    pub guest_port: u16,
}

/// A `-netdev user` (or the user part of a `-nic user`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserNet {
    pub id: String,
    pub net: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub host: Ipv4Addr,
    pub dns: Ipv4Addr,
    pub dhcp_start: Ipv4Addr,
    pub ipv4: bool,
    pub ipv6: bool,
    pub restrict: bool,
    pub hostname: Option<String>,
    pub hostfwd: Vec<HostFwd>,
}

/// The MAC address QEMU gives its first card without `mac=`.
pub const DEFAULT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn on_off(what: &str, k: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => bail!("{what}: {k}={v}: expected on or off"),
    }
}

fn ip(what: &str, k: &str, v: &str) -> Result<Ipv4Addr> {
    v.parse()
        .with_context(|| format!("{what}: {k}={v}: not an IPv4 address"))
}

/// `ADDR[/MASK]`, the mask a prefix length or dotted (QEMU's `net=`).
fn net_and_mask(what: &str, v: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let (a, m) = v.split_once('/').unwrap_or((v, "24"));
    let addr = ip(what, "net", a)?;
    let mask = match m.parse::<u32>() {
        Ok(n) if n <= 32 => Ipv4Addr::from(u32::MAX.checked_shl(32 - n).unwrap_or(0)),
        Ok(_) => bail!("{what}: net={v}: the prefix length must be 0-32"),
        Err(_) => {
            let m = ip(what, "net", m)?;
            let b = u32::from(m);
            if b.leading_ones() + b.trailing_zeros() != 32 {
                bail!("{what}: net={v}: {m} is not a network mask");
            }
            m
        }
    };
    Ok((Ipv4Addr::from(u32::from(addr) & u32::from(mask)), mask))
}

/// `hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`. An empty
/// host address is 127.0.0.1 (QEMU binds every interface; hx86 keeps a
/// forwarded port to the host's own users unless told otherwise), an empty
/// guest address the first DHCP address.
fn hostfwd(what: &str, v: &str, dhcp_start: Ipv4Addr) -> Result<HostFwd> {
    let bad = || {
        format!("{what}: hostfwd={v}: expected [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT")
    };
    let (proto, rest) = v.split_once(':').with_context(bad)?;
    let udp = match proto {
        "" | "tcp" => false,
        "udp" => true,
        _ => bail!("{what}: hostfwd={v}: protocol '{proto}' (use tcp or udp)"),
    };
    let (host, guest) = rest.split_once('-').with_context(bad)?;
    let side = |s: &str, default: Ipv4Addr| -> Result<(Ipv4Addr, u16)> {
        let (a, p) = s.split_once(':').with_context(bad)?;
        let addr = if a.is_empty() {
            default
        } else {
            ip(what, "hostfwd", a)?
        };
        let port = p
            .parse::<u16>()
            .with_context(|| format!("{what}: hostfwd={v}: '{p}' is not a port number"))?;
        Ok((addr, port))
    };
    let (host_addr, host_port) = side(host, Ipv4Addr::LOCALHOST)?;
    let (guest_addr, guest_port) = side(guest, dhcp_start)?;
    if guest_port == 0 {
        bail!("{what}: hostfwd={v}: the guest port must not be 0");
    }
    Ok(HostFwd {
        udp,
        host_addr,
        host_port,
        guest_addr,
        guest_port,
    })
}

/// The `user` network options of `-netdev user,...` or `-nic user,...`
/// (`type` already taken off). `nic`: options of the `-nic` card itself
/// (`model=`, `mac=`) are skipped here.
fn parse_user(what: &str, items: &[(&str, &str)], nic: bool) -> Result<UserNet> {
    let mut id = None;
    let mut net = (Ipv4Addr::new(10, 0, 2, 0), Ipv4Addr::new(255, 255, 255, 0));
    let (mut host, mut dns, mut dhcp) = (None, None, None);
    let mut fwd = Vec::new();
    let mut u = UserNet {
        id: String::new(),
        net: net.0,
        mask: net.1,
        host: Ipv4Addr::UNSPECIFIED,
        dns: Ipv4Addr::UNSPECIFIED,
        dhcp_start: Ipv4Addr::UNSPECIFIED,
        ipv4: true,
        ipv6: true,
        restrict: false,
        hostname: None,
        hostfwd: Vec::new(),
    };
    for &(k, v) in items {
        match k {
            "id" => id = Some(v.to_string()),
            "net" => net = net_and_mask(what, v)?,
            "host" => host = Some(ip(what, k, v)?),
            "dns" => dns = Some(ip(what, k, v)?),
            "dhcpstart" => dhcp = Some(ip(what, k, v)?),
            "hostfwd" => fwd.push(v),
            "ipv4" => u.ipv4 = on_off(what, k, v)?,
            "ipv6" => u.ipv6 = on_off(what, k, v)?,
            "restrict" => u.restrict = on_off(what, k, v)?,
            "hostname" => u.hostname = Some(v.to_string()),
            "model" | "mac" if nic => {}
            _ => bail!("{what}: the user network has no option '{k}' in hx86 (it has id, net, host, dns, dhcpstart, hostfwd, ipv4, ipv6, restrict, hostname)"),
        }
    }
    if !u.ipv4 {
        bail!("{what}: ipv4=off is not supported (hx86's user network always has IPv4)");
    }
    (u.net, u.mask) = net;
    let base = u32::from(u.net);
    let in_net = |a: Ipv4Addr| u32::from(a) & u32::from(u.mask) == base;
    u.host = host.unwrap_or(Ipv4Addr::from(base | 2));
    u.dns = dns.unwrap_or(Ipv4Addr::from(base | 3));
    u.dhcp_start = dhcp.unwrap_or(Ipv4Addr::from(base | 15));
    if u32::from(u.mask) & 0xff != 0 || u.mask.is_unspecified() {
        bail!(
            "{what}: net={}: the network must have room for hosts (a mask of at most /24)",
            u.net
        );
    }
    for (name, a) in [
        ("host", u.host),
        ("dns", u.dns),
        ("dhcpstart", u.dhcp_start),
    ] {
        if !in_net(a) {
            bail!(
                "{what}: {name}={a} is not in the network {}/{}",
                u.net,
                u.mask
            );
        }
    }
    if u.dns == u.host || u.dhcp_start == u.host || u.dhcp_start == u.dns {
        bail!(
            "{what}: host {}, dns {} and dhcpstart {} must differ",
            u.host,
            u.dns,
            u.dhcp_start
        );
    }
    u.id = match id {
        Some(i) if !i.is_empty() => i,
        _ if nic => String::new(),
        _ => bail!("{what}: a netdev needs an id (id=NAME)"),
    };
    for f in fwd {
        u.hostfwd.push(hostfwd(what, f, u.dhcp_start)?);
    }
    Ok(u)
}

/// The first item of a `-netdev`/`-nic` value: the backend type.
fn check_type(what: &str, ty: &str) -> Result<()> {
    match ty {
        "user" => Ok(()),
        "tap" | "bridge" | "socket" | "stream" | "dgram" | "vde" | "l2tpv3" | "vhost-user"
        | "vhost-vdpa" | "netmap" | "af-xdp" | "hubport" => bail!(
            "{what}: the '{ty}' network backend is not supported (hx86 has only user-mode networking: -netdev user)"
        ),
        "" => bail!("{what}: missing the network backend type (user)"),
        _ => bail!("{what}: unknown network backend type '{ty}' (hx86 has user)"),
    }
}

/// `-netdev help` and `-nic help` / `-nic user,model=help`: QEMU's lists.
pub fn help_request(netdevs: &[String], nics: &[String]) -> Option<String> {
    let help = |v: &str| v == "help" || v == "?";
    let backends = "Available netdev backend types:\nuser\n";
    if netdevs.iter().any(|n| help(n)) || nics.iter().any(|n| help(n)) {
        return Some(backends.into());
    }
    let model_help = nics
        .iter()
        .any(|n| n.split(',').any(|p| p == "model=help" || p == "model=?"));
    model_help.then(|| "Available NIC models:\nvirtio-net-pci\n".into())
}

/// Parse a `-netdev` value.
pub fn parse_netdev(spec: &str) -> Result<UserNet> {
    let what = format!("-netdev {spec}");
    let mut it = spec.split(',');
    let ty = it.next().unwrap_or("");
    check_type(&what, ty)?;
    parse_user(&what, &props(&what, it)?, false)
}

/// A `MAC=` value: six hex bytes separated by colons (or dashes).
pub fn parse_mac(what: &str, v: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = v.split([':', '-']).collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        bail!("{what}: mac={v}: expected six hex bytes, 52:54:00:12:34:56");
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| p.len() == 2)
            .with_context(|| {
                format!("{what}: mac={v}: expected six hex bytes, 52:54:00:12:34:56")
            })?;
    }
    if mac[0] & 1 != 0 {
        bail!("{what}: mac={v}: a multicast address cannot be a card's address");
    }
    Ok(mac)
}

/// What a `-nic` option adds: nothing (`none`) or a card with its own
/// user network.
pub enum Nic {
    None,
    Card { mac: Option<[u8; 6]>, user: UserNet },
}

/// Parse a `-nic` value.
pub fn parse_nic(spec: &str) -> Result<Nic> {
    let what = format!("-nic {spec}");
    if spec == "none" {
        return Ok(Nic::None);
    }
    let mut it = spec.split(',');
    let ty = it.next().unwrap_or("");
    check_type(&what, ty)?;
    let items = props(&what, it)?;
    let mut mac = None;
    for &(k, v) in &items {
        match (k, v) {
            ("model", "virtio-net-pci" | "virtio") => {}
            ("model", m) => {
                bail!("{what}: model={m} is not supported (hx86's network card is virtio-net-pci)")
            }
            ("mac", v) => mac = Some(parse_mac(&what, v)?),
            _ => {}
        }
    }
    Ok(Nic::Card {
        mac,
        user: parse_user(&what, &items, true)?,
    })
}

/// Connects cards and netdevs: each `-device virtio-net-pci,netdev=ID`
/// gets its netdev's options, each `-nic` adds a card at the end; cards
/// without `mac=` get QEMU's default addresses in order. `netdevs` left
/// without a card are warned about, as QEMU does.
pub fn resolve(devs: &mut Vec<DeviceConfig>, netdevs: &[String], nics: &[String]) -> Result<()> {
    let mut users = Vec::new();
    for n in netdevs {
        let u = parse_netdev(n)?;
        if users.iter().any(|(x, _): &(UserNet, bool)| x.id == u.id) {
            bail!("-netdev {n}: duplicate netdev id '{}'", u.id);
        }
        users.push((u, false));
    }
    for d in devs.iter_mut() {
        let DeviceConfig::VirtioNet { netdev, user, .. } = d else {
            continue;
        };
        let Some(id) = netdev else {
            warn("-device virtio-net-pci: the card has no netdev= (it is not connected to a network)");
            continue;
        };
        let Some((u, used)) = users.iter_mut().find(|(u, _)| &u.id == id) else {
            bail!("-device virtio-net-pci,netdev={id}: no -netdev with id '{id}'");
        };
        if *used {
            bail!("-device virtio-net-pci,netdev={id}: netdev '{id}' is already in use by another card");
        }
        *used = true;
        *user = Some(Box::new(u.clone()));
    }
    for (u, used) in &users {
        if !used {
            warn(&format!(
                "netdev {} has no peer (no -device virtio-net-pci,netdev={})",
                u.id, u.id
            ));
        }
    }
    for n in nics {
        if let Nic::Card { mac, user } = parse_nic(n)? {
            devs.push(DeviceConfig::VirtioNet {
                netdev: None,
                mac,
                addr: None,
                user: Some(Box::new(user)),
            });
        }
    }
    let mut next = DEFAULT_MAC[5];
    for d in devs.iter_mut() {
        if let DeviceConfig::VirtioNet { mac: m @ None, .. } = d {
            let mut mac = DEFAULT_MAC;
            mac[5] = next;
            next = next.wrapping_add(1);
            *m = Some(mac);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn netdev_user_defaults_and_options() {
        let u = parse_netdev("user,id=n0").unwrap();
        assert_eq!(
            (u.net, u.mask, u.host, u.dns, u.dhcp_start),
            (
                a("10.0.2.0"),
                a("255.255.255.0"),
                a("10.0.2.2"),
                a("10.0.2.3"),
                a("10.0.2.15")
            )
        );
        assert!(u.ipv6 && !u.restrict && u.hostfwd.is_empty());
        let u = parse_netdev(
            "user,id=n1,net=192.168.76.0/16,hostfwd=tcp::2222-:22,hostfwd=udp:0.0.0.0:5353-10.0.0.9:53,restrict=on",
        )
        .unwrap();
        assert_eq!(u.net, a("192.168.0.0"));
        assert_eq!(u.mask, a("255.255.0.0"));
        assert_eq!(u.host, a("192.168.0.2"));
        assert_eq!(u.dhcp_start, a("192.168.0.15"));
        assert!(u.restrict);
        assert_eq!(
            u.hostfwd,
            [
                HostFwd {
                    udp: false,
                    host_addr: Ipv4Addr::LOCALHOST,
                    host_port: 2222,
                    guest_addr: a("192.168.0.15"),
                    guest_port: 22
                },
                HostFwd {
                    udp: true,
                    host_addr: a("0.0.0.0"),
                    host_port: 5353,
                    guest_addr: a("10.0.0.9"),
                    guest_port: 53
                }
            ]
        );
        let u = parse_netdev(
            "user,id=x,net=10.1.0.0/255.255.255.0,host=10.1.0.1,dns=10.1.0.53,dhcpstart=10.1.0.100",
        )
        .unwrap();
        assert_eq!(
            (u.host, u.dns, u.dhcp_start),
            (a("10.1.0.1"), a("10.1.0.53"), a("10.1.0.100"))
        );
    }

    #[test]
    fn bad_netdevs_fail_clearly() {
        for (spec, msg) in [
            (
                "tap,id=t0,ifname=tap0",
                "'tap' network backend is not supported",
            ),
            (
                "bridge,id=b,br=br0",
                "'bridge' network backend is not supported",
            ),
            (
                "socket,id=s,listen=:1234",
                "'socket' network backend is not supported",
            ),
            ("frob,id=x", "unknown network backend type"),
            ("user", "needs an id"),
            ("user,id=n,smb=/tmp", "no option 'smb'"),
            ("user,id=n,net=10.0.2.0/33", "prefix length"),
            ("user,id=n,net=10.0.2.0/255.0.255.0", "not a network mask"),
            ("user,id=n,net=10.0.2.0/28", "at most /24"),
            ("user,id=n,host=10.0.3.2", "not in the network"),
            ("user,id=n,dns=10.0.2.2", "must differ"),
            ("user,id=n,dhcpstart=1.2.3", "not an IPv4 address"),
            ("user,id=n,hostfwd=tcp:2222-:22", "expected [tcp|udp]"),
            ("user,id=n,hostfwd=sctp::1-:2", "protocol 'sctp'"),
            ("user,id=n,hostfwd=tcp::99999-:22", "not a port number"),
            ("user,id=n,hostfwd=tcp::2222-:0", "guest port"),
            ("user,id=n,ipv4=off", "ipv4=off"),
            ("user,id=n,ipv6=maybe", "expected on or off"),
        ] {
            let e = parse_netdev(spec).unwrap_err().to_string();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }

    #[test]
    fn help_texts() {
        let h = |n: &[&str], c: &[&str]| {
            let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            help_request(&v(n), &v(c))
        };
        assert_eq!(
            h(&["help"], &[]).unwrap(),
            "Available netdev backend types:\nuser\n"
        );
        assert!(h(&[], &["?"]).unwrap().contains("user"));
        assert_eq!(
            h(&[], &["user,model=help"]).unwrap(),
            "Available NIC models:\nvirtio-net-pci\n"
        );
        assert!(h(&["user,id=n"], &["user"]).is_none());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("x", "52:54:00:ab:cd:EF").unwrap(),
            [0x52, 0x54, 0, 0xab, 0xcd, 0xef]
        );
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "5:54:00:ab:cd:ef",
            "01:00:5e:00:00:01",
            "zz:54:00:ab:cd:ef",
        ] {
            assert!(parse_mac("x", bad).is_err(), "{bad}");
        }
    }

    fn card(netdev: Option<&str>, mac: Option<[u8; 6]>) -> DeviceConfig {
        DeviceConfig::VirtioNet {
            netdev: netdev.map(str::to_string),
            mac,
            addr: None,
            user: None,
        }
    }

    #[test]
    fn cards_meet_their_netdevs_and_get_default_macs() {
        let own = [2, 0, 0, 0, 0, 1];
        let mut devs = vec![
            card(Some("a"), None),
            card(Some("b"), Some(own)),
            card(None, None),
        ];
        resolve(
            &mut devs,
            &[
                "user,id=a".into(),
                "user,id=b,hostfwd=tcp::8080-:80".into(),
                "user,id=lonely".into(),
            ],
            &[
                "user,model=virtio-net-pci,hostfwd=tcp::2222-:22".into(),
                "none".into(),
            ],
        )
        .unwrap();
        let macs: Vec<_> = devs
            .iter()
            .map(|d| match d {
                DeviceConfig::VirtioNet { mac, .. } => mac.unwrap()[5],
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(macs, [0x56, 1, 0x57, 0x58]);
        let DeviceConfig::VirtioNet { user: Some(u), .. } = &devs[1] else {
            panic!()
        };
        assert_eq!((u.id.as_str(), u.hostfwd[0].host_port), ("b", 8080));
        let DeviceConfig::VirtioNet { user: Some(u), .. } = &devs[3] else {
            panic!()
        };
        assert_eq!(u.hostfwd[0].guest_port, 22);
        assert!(matches!(
            &devs[2],
            DeviceConfig::VirtioNet { user: None, .. }
        ));

        for (netdevs, devs, nics, msg) in [
            (
                &["user,id=a"][..],
                vec![card(Some("b"), None)],
                &[][..],
                "no -netdev with id 'b'",
            ),
            (
                &["user,id=a"],
                vec![card(Some("a"), None), card(Some("a"), None)],
                &[],
                "already in use",
            ),
            (
                &["user,id=a", "user,id=a"],
                vec![],
                &[],
                "duplicate netdev id",
            ),
            (
                &[],
                vec![],
                &["user,model=e1000"],
                "model=e1000 is not supported",
            ),
            (
                &[],
                vec![],
                &["tap,ifname=tap0"],
                "'tap' network backend is not supported",
            ),
        ] {
            let mut devs = devs;
            let netdevs: Vec<String> = netdevs.iter().map(|s| s.to_string()).collect();
            let nics: Vec<String> = nics.iter().map(|s| s.to_string()).collect();
            let e = resolve(&mut devs, &netdevs, &nics).unwrap_err().to_string();
            assert!(e.contains(msg), "{e}");
        }
    }
}

// Telling the neighbours that an address arrived on this interface, without spawning a tool:
// IPv4 a gratuitous ARP (an RFC 5227 announcement, a request with the address as sender and
// target, then the same as a reply to the broadcast address, as arping -U / -A and send_arp do:
// some hosts heed only one kind) over an AF_PACKET socket; IPv6 an unsolicited neighbour
// advertisement (RFC 4861 7.2.6: override flag, the target link-layer address option, to
// all-nodes, hop limit 255) over a raw ICMPv6 socket, whose checksum the kernel fills in.
// Both need CAP_NET_RAW; a spawned send_arp costs 60-90 ms of process start and exit before the
// first SM_NOTIFY may leave, these two sends well under a millisecond.
#include "common.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace lockdrop {
namespace {

// A descriptor closed on every return path.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// The interface's Ethernet address; false with errno set (EOPNOTSUPP when it is no Ethernet).
bool EthernetAddress(int fd, const std::string& device, unsigned char mac[ETH_ALEN]) {
  ifreq ifr{};
  memcpy(ifr.ifr_name, device.data(), device.size());
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) return false;
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    errno = EOPNOTSUPP;
    return false;
  }
  memcpy(mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
  return true;
}

struct __attribute__((packed)) ArpPacket {
  uint16_t htype, ptype;
  uint8_t hlen, plen;
  uint16_t op;
  uint8_t sha[ETH_ALEN];
  uint8_t spa[4];
  uint8_t tha[ETH_ALEN];
  uint8_t tpa[4];
};

Napi::Value AnnounceIpv4(Napi::Env env, const std::string& device, unsigned ifindex, const in_addr& address) {
  Fd s(socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)));
  if (s.fd < 0) return ThrowErrno(env, "gratuitous ARP: AF_PACKET socket", errno);
  unsigned char mac[ETH_ALEN];
  if (!EthernetAddress(s.fd, device, mac)) return ThrowErrno(env, "gratuitous ARP: the Ethernet address of " + device, errno);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = static_cast<int>(ifindex);
  to.sll_halen = ETH_ALEN;
  memset(to.sll_addr, 0xff, ETH_ALEN);
  for (uint16_t op : {ARPOP_REQUEST, ARPOP_REPLY}) {
    ArpPacket p{};
    p.htype = htons(ARPHRD_ETHER);
    p.ptype = htons(ETH_P_IP);
    p.hlen = ETH_ALEN;
    p.plen = 4;
    p.op = htons(op);
    memcpy(p.sha, mac, ETH_ALEN);
    memcpy(p.spa, &address, 4);
    // The announcement's target hardware address is zero (RFC 5227 2.3); the reply's, broadcast.
    if (op == ARPOP_REPLY) memset(p.tha, 0xff, ETH_ALEN);
    memcpy(p.tpa, &address, 4);
    if (sendto(s.fd, &p, sizeof p, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
      return ThrowErrno(env, "gratuitous ARP on " + device, errno);
  }
  return env.Undefined();
}

struct __attribute__((packed)) NeighbourAdvert {
  nd_neighbor_advert na;
  uint8_t optType, optLen;
  uint8_t mac[ETH_ALEN];
};

Napi::Value AnnounceIpv6(Napi::Env env, const std::string& device, unsigned ifindex, const in6_addr& address) {
  Fd s(socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
  if (s.fd < 0) return ThrowErrno(env, "unsolicited neighbour advertisement: raw ICMPv6 socket", errno);
  unsigned char mac[ETH_ALEN];
  if (!EthernetAddress(s.fd, device, mac)) return ThrowErrno(env, "unsolicited neighbour advertisement: the Ethernet address of " + device, errno);
  int hops = 255;  // receivers drop neighbour discovery with any other hop limit
  int index = static_cast<int>(ifindex);
  if (setsockopt(s.fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) < 0 ||
      setsockopt(s.fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof index) < 0)
    return ThrowErrno(env, "unsolicited neighbour advertisement: socket options", errno);
  // From the address itself (an address of the interface, RFC 4861 7.2.6).
  sockaddr_in6 from{};
  from.sin6_family = AF_INET6;
  from.sin6_addr = address;
  if (IN6_IS_ADDR_LINKLOCAL(&address)) from.sin6_scope_id = ifindex;
  if (bind(s.fd, reinterpret_cast<sockaddr*>(&from), sizeof from) < 0)
    return ThrowErrno(env, "unsolicited neighbour advertisement: binding to the address", errno);
  NeighbourAdvert p{};
  p.na.nd_na_type = ND_NEIGHBOR_ADVERT;
  p.na.nd_na_code = 0;
  p.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
  p.na.nd_na_target = address;
  p.optType = ND_OPT_TARGET_LINKADDR;
  p.optLen = 1;  // in units of 8 bytes
  memcpy(p.mac, mac, ETH_ALEN);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
  to.sin6_scope_id = ifindex;
  if (sendto(s.fd, &p, sizeof p, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
    return ThrowErrno(env, "unsolicited neighbour advertisement on " + device, errno);
  return env.Undefined();
}

// announceAddress(device, address): throws a TypeError for bad arguments, an errno error when the
// interface is unknown (ENODEV), not Ethernet (EOPNOTSUPP), or a socket or send fails (EPERM
// without CAP_NET_RAW).
Napi::Value AnnounceAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) return ThrowType(env, "announceAddress(device: string, address: string)");
  std::string device = info[0].As<Napi::String>().Utf8Value();
  std::string address = info[1].As<Napi::String>().Utf8Value();
  if (device.empty() || device.size() >= IFNAMSIZ || device.find('\0') != std::string::npos) return ThrowType(env, "announceAddress: bad interface name '" + device + "'");
  unsigned ifindex = if_nametoindex(device.c_str());
  if (ifindex == 0) return ThrowErrno(env, "announceAddress: interface " + device, errno);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return AnnounceIpv4(env, device, ifindex, v4);
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) return AnnounceIpv6(env, device, ifindex, v6);
  return ThrowType(env, "announceAddress: '" + address + "' is no IPv4 or IPv6 address");
}

}  // namespace

void InitNeighbours(Napi::Env env, Napi::Object exports) {
  exports.Set("announceAddress", Napi::Function::New(env, AnnounceAddress, "announceAddress"));
}

}  // namespace lockdrop

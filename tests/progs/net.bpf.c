// SPDX-License-Identifier: GPL-2.0
/* Network attach points: cgroup egress and XDP, counting UDP packets to one port. */
#include "lbc.h"

#define ETH_P_IP 0x0800

const volatile u16 port = 0;	/* UDP destination port, host order */

u64 egress_pkts, xdp_pkts;

SEC("cgroup_skb/egress")
int egress(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct udphdr udp;

	/* cgroup skbs start at the IP header */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_UDP)
		return 1;
	if (bpf_skb_load_bytes(skb, ip.ihl * 4, &udp, sizeof(udp)))
		return 1;
	if (ntohs(udp.dest) == port)
		__sync_fetch_and_add(&egress_pkts, 1);
	return 1;	/* let it through */
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;

	if ((void *)(ip + 1) > end || eth->h_proto != htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	if (ntohs(udp->dest) == port)
		__sync_fetch_and_add(&xdp_pkts, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

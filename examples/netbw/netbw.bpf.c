// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * netbw: bytes and packets per network device, transmit and receive.
 *
 * Two alternative program pairs, best first (the Python side keeps the first
 * this kernel runs, lcc.Fallback):
 *   tp_btf net_dev_xmit + netif_receive_skb: typed arguments; net_dev_xmit
 *     hands over the device and the driver's verdict, so only frames the
 *     driver accepted are counted;
 *   the classic net:net_dev_start_xmit + net:netif_receive_skb tracepoints:
 *     the skb is read for its device (a frame the driver refuses and the
 *     stack requeues counts twice).
 *
 * Byte counts are frame lengths as drivers count them: transmit is skb->len
 * handed to the driver; receive adds back the link-layer header that
 * eth_type_trans() pulled before netif_receive_skb.
 */
#include "lbc.h"
#include "netbw.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct dev_key);
	__type(value, struct dev_stats);
} stats SEC(".maps");

__u64 missed = 0;	/* frames not counted because the map was full */

static __always_inline void count(struct net_device *dev, __u64 bytes, bool tx)
{
	struct dev_key key = {};
	struct dev_stats *s;

	if (!dev)
		return;
	key.ifindex = BPF_CORE_READ(dev, ifindex);
	key.netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	s = bpf_map_lookup_elem(&stats, &key);
	if (!s) {
		/* First frame of this device: create its entry, with its name. */
		struct dev_stats zero = {};

		BPF_CORE_READ_STR_INTO(&zero.name, dev, name);
		bpf_map_update_elem(&stats, &key, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stats, &key);
		if (!s) {
			__sync_fetch_and_add(&missed, 1);
			return;
		}
	}
	/* Per-CPU values: this CPU's copy, no atomics needed. */
	if (tx) {
		s->tx_bytes += bytes;
		s->tx_packets++;
	} else {
		s->rx_bytes += bytes;
		s->rx_packets++;
	}
}

/* skb->len plus the link-layer header in front of skb->data (pulled on receive). */
static __always_inline __u64 rx_len(struct sk_buff *skb)
{
	__u64 len = BPF_CORE_READ(skb, len);
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	unsigned char *head = BPF_CORE_READ(skb, head), *data = BPF_CORE_READ(skb, data);

	if (mac != (__u16)~0U && head + mac < data && data - (head + mac) <= 64)
		len += data - (head + mac);
	return len;
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(btf_net_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev,
	     unsigned int skb_len)
{
	if (rc == 0)	/* NETDEV_TX_OK */
		count(dev, skb_len, true);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(btf_netif_receive_skb, struct sk_buff *skb)
{
	count(BPF_CORE_READ(skb, dev), rx_len(skb), false);
	return 0;
}

SEC("tracepoint/net/net_dev_start_xmit")
int tp_net_dev_start_xmit(struct trace_event_raw_net_dev_start_xmit *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->skbaddr;

	count(BPF_CORE_READ(skb, dev), ctx->len, true);
	return 0;
}

SEC("tracepoint/net/netif_receive_skb")
int tp_netif_receive_skb(struct trace_event_raw_net_dev_template *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->skbaddr;

	count(BPF_CORE_READ(skb, dev), rx_len(skb), false);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

package cluster

// memberlist's encryption authenticates packets but does not stop an
// attacker on the path from replaying one: a captured advert of the
// master, replayed after the master died, would keep the backup from
// taking over. Every topic message therefore carries the sender's epoch
// (its start time) and a sequence number, and the receiver keeps an
// IPsec-style sliding window per sender: a message older than the window,
// or already seen, or from an earlier epoch, is dropped and counted.
//
// Remaining gap: a receiver that has just (re)started accepts the first
// epoch and sequence it sees from a sender.

const replayWindowSize = 64

type replayWindow struct {
	known  bool
	epoch  uint64
	top    uint64 // highest sequence accepted
	bitmap uint64 // bit i set: top-i was accepted
}

// accept reports whether (epoch, seq) is new, and records it.
func (w *replayWindow) accept(epoch, seq uint64) bool {
	switch {
	case !w.known || epoch > w.epoch:
		*w = replayWindow{known: true, epoch: epoch, top: seq, bitmap: 1}
		return true
	case epoch < w.epoch:
		return false
	case seq > w.top:
		if shift := seq - w.top; shift >= replayWindowSize {
			w.bitmap = 1
		} else {
			w.bitmap = w.bitmap<<shift | 1
		}
		w.top = seq
		return true
	}
	diff := w.top - seq
	if diff >= replayWindowSize || w.bitmap&(1<<diff) != 0 {
		return false
	}
	w.bitmap |= 1 << diff
	return true
}

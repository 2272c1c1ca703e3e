// gocli: a Go client on cilium/ebpf (Debian's golang-github-cilium-ebpf-dev, 0.9.x) for
// bpfemu's real-client tests. Go makes raw syscalls (no libc), so only an interception
// below libc, such as seccomp, can serve its bpf() calls.
//
// It runs NewMap, Put/Update/Lookup/Delete, Iterate, BatchLookup, BatchUpdate, BatchDelete,
// Info, Pin, LoadPinnedMap, NewMapFromID and Freeze on HASH, PERCPU_HASH, LRU_HASH and
// ARRAY maps, and NewMapWithOptions with pinning by name, and prints a transcript that is the same on the live kernel and under
// `bpfemu run`: hash maps use BPF_F_ZERO_SEED so that walk order is the kernel's; map
// ids are printed as "id#N" (the harness renames them); fd numbers are never printed.
//
// usage: gocli PIN_DIR. With CLIENT_PAUSE set it stops once while its maps are open and
// pinned, prints "PAUSE <readlink of a map fd>" on stderr and waits for a line on stdin.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

const (
	zeroSeed   = 0x40 // BPF_F_ZERO_SEED
	maxEntries = 8
)

// errText names the errno under a cilium error, or "ok".
func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		name := unix.ErrnoName(errno)
		if errno == 524 {
			name = "ENOTSUPP"
		}
		return name + " (" + err.Error() + ")"
	}
	return "error (" + err.Error() + ")"
}

func possibleCPUs() int {
	data, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		panic(err)
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(data)), ",") {
		bounds := strings.SplitN(part, "-", 2)
		lo, _ := strconv.Atoi(bounds[0])
		hi := lo
		if len(bounds) == 2 {
			hi, _ = strconv.Atoi(bounds[1])
		}
		n += hi - lo + 1
	}
	return n
}

var ncpus = possibleCPUs()

type spec struct {
	name   string
	typ    ebpf.MapType
	flags  uint32
	percpu bool
}

func value(s spec, base uint64) interface{} {
	if !s.percpu {
		return base
	}
	v := make([]uint64, ncpus)
	for i := range v {
		v[i] = base + uint64(i)
	}
	return v
}

func show(s spec, m *ebpf.Map, key uint32) string {
	if s.percpu {
		var v []uint64
		if err := m.Lookup(key, &v); err != nil {
			return errText(err)
		}
		return fmt.Sprint(v)
	}
	var v uint64
	if err := m.Lookup(key, &v); err != nil {
		return errText(err)
	}
	return fmt.Sprint(v)
}

func info(label string, m *ebpf.Map) {
	i, err := m.Info()
	if err != nil {
		fmt.Printf("  info(%s) -> %s\n", label, errText(err))
		return
	}
	id, ok := i.ID()
	fmt.Printf("  info(%s) type=%v id#%d(%v) key=%d value=%d max=%d flags=0x%x name=%q\n",
		label, i.Type, id, ok, i.KeySize, i.ValueSize, i.MaxEntries, i.Flags, i.Name)
}

func iterate(s spec, m *ebpf.Map) {
	var key uint32
	var out []string
	it := m.Iterate()
	if s.percpu {
		var v []uint64
		for it.Next(&key, &v) {
			out = append(out, fmt.Sprintf("%d=%v", key, v))
		}
	} else {
		var v uint64
		for it.Next(&key, &v) {
			out = append(out, fmt.Sprintf("%d=%d", key, v))
		}
	}
	fmt.Printf("  iterate: %s (%s)\n", strings.Join(out, " "), errText(it.Err()))
}

func batchLookup(s spec, m *ebpf.Map, chunk int) {
	slots := 1
	if s.percpu {
		slots = ncpus // cilium 0.9 refuses batches on per-CPU maps before any syscall
	}
	var prev interface{}
	var next uint32
	for round := 0; round < 2*maxEntries; round++ {
		keys := make([]uint32, chunk)
		values := make([]uint64, chunk*slots)
		n, err := m.BatchLookup(prev, &next, keys, values, nil)
		fmt.Printf("  BatchLookup n=%d keys=%v values=%v -> %s\n", n, keys[:n],
			values[:n*slots], errText(err))
		if err != nil {
			return
		}
		prev = next
	}
}

func section(s spec, pinDir string) *ebpf.Map {
	fmt.Printf("map %s type=%v flags=0x%x\n", s.name, s.typ, s.flags)
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: s.name, Type: s.typ, KeySize: 4, ValueSize: 8, MaxEntries: maxEntries, Flags: s.flags,
	})
	fmt.Printf("  NewMap -> %s\n", errText(err))
	if err != nil {
		return nil
	}
	info("created", m)
	for k := uint32(1); k <= 5; k++ {
		fmt.Printf("  Put %d -> %s\n", k, errText(m.Put(k, value(s, uint64(100*k)))))
	}
	fmt.Printf("  Update 1 NoExist -> %s\n", errText(m.Update(uint32(1), value(s, 1), ebpf.UpdateNoExist)))
	fmt.Printf("  Update 6 Exist -> %s\n", errText(m.Update(uint32(6), value(s, 6), ebpf.UpdateExist)))
	fmt.Printf("  Put 9 -> %s\n", errText(m.Put(uint32(9), value(s, 9))))
	fmt.Printf("  Lookup 3 -> %s\n", show(s, m, 3))
	fmt.Printf("  Lookup 7 -> %s\n", show(s, m, 7))
	fmt.Printf("  Delete 2 -> %s\n", errText(m.Delete(uint32(2))))
	fmt.Printf("  Delete 2 again -> %s\n", errText(m.Delete(uint32(2))))
	var nk uint32
	fmt.Printf("  NextKey(nil) -> %s %d\n", errText(m.NextKey(nil, &nk)), nk)
	iterate(s, m)

	keys := []uint32{4, 5, 6, 7}
	var values interface{}
	if s.percpu {
		flat := make([]uint64, 0, 4*ncpus)
		for _, k := range keys {
			flat = append(flat, value(s, uint64(1000+k)).([]uint64)...)
		}
		values = flat
	} else {
		values = []uint64{1004, 1005, 1006, 1007}
	}
	n, err := m.BatchUpdate(keys, values, nil)
	fmt.Printf("  BatchUpdate n=%d -> %s\n", n, errText(err))
	batchLookup(s, m, 3)
	n, err = m.BatchDelete([]uint32{6, 7}, nil)
	fmt.Printf("  BatchDelete n=%d -> %s\n", n, errText(err))
	iterate(s, m)

	path := filepath.Join(pinDir, s.name)
	fmt.Printf("  Pin -> %s\n", errText(m.Pin(path)))
	pinned, err := ebpf.LoadPinnedMap(path, nil)
	fmt.Printf("  LoadPinnedMap -> %s\n", errText(err))
	if err == nil {
		info("pinned", pinned)
		fmt.Printf("  Put 1 through the pin -> %s\n", errText(pinned.Put(uint32(1), value(s, 4242))))
		fmt.Printf("  Lookup 1 -> %s\n", show(s, m, 1))
		pinned.Close()
	}
	i, _ := m.Info()
	id, _ := i.ID()
	byID, err := ebpf.NewMapFromID(id)
	fmt.Printf("  NewMapFromID -> %s\n", errText(err))
	if err == nil {
		info("by id", byID)
		byID.Close()
	}
	fmt.Printf("  Freeze -> %s\n", errText(m.Freeze()))
	fmt.Printf("  Put 1 after Freeze -> %s\n", errText(m.Put(uint32(1), value(s, 5))))
	fmt.Printf("  Lookup 1 -> %s\n", show(s, m, 1))
	return m
}

// pinByName is cilium's create-or-reuse pattern: a MapSpec pinned by name under a path
// is created and pinned the first time, loaded from its pin after, and refused when the
// pinned map does not fit the spec.
func pinByName(pinDir string) *ebpf.Map {
	spec := &ebpf.MapSpec{Name: "go_by_name", Type: ebpf.Hash, KeySize: 4, ValueSize: 8,
		MaxEntries: maxEntries, Pinning: ebpf.PinByName}
	opts := ebpf.MapOptions{PinPath: pinDir}
	fmt.Println("pin by name")
	first, err := ebpf.NewMapWithOptions(spec, opts)
	fmt.Printf("  NewMapWithOptions (creates) -> %s\n", errText(err))
	if err != nil {
		return nil
	}
	fmt.Printf("  Put 1 -> %s\n", errText(first.Put(uint32(1), uint64(7))))
	again, err := ebpf.NewMapWithOptions(spec, opts)
	fmt.Printf("  NewMapWithOptions (reuses the pin) -> %s\n", errText(err))
	if err == nil {
		info("reused", again)
		var v uint64
		fmt.Printf("  Lookup 1 through it -> %s %d\n", errText(again.Lookup(uint32(1), &v)), v)
		again.Close()
	}
	bigger := spec.Copy()
	bigger.ValueSize = 16
	_, err = ebpf.NewMapWithOptions(bigger, opts)
	fmt.Printf("  NewMapWithOptions with another value size -> %s\n", errText(err))
	return first
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gocli PIN_DIR")
		os.Exit(2)
	}
	pinDir := os.Args[1]
	fmt.Printf("possible cpus: %d\n", ncpus)
	specs := []spec{
		{"go_hash", ebpf.Hash, zeroSeed, false},
		{"go_percpu_hash", ebpf.PerCPUHash, zeroSeed, true},
		{"go_lru_hash", ebpf.LRUHash, zeroSeed, false},
		{"go_array", ebpf.Array, 0, false},
	}
	var maps []*ebpf.Map
	for _, s := range specs {
		if m := section(s, pinDir); m != nil {
			maps = append(maps, m)
		}
	}
	if m := pinByName(pinDir); m != nil {
		maps = append(maps, m)
	}
	_, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "missing"), nil)
	fmt.Printf("LoadPinnedMap missing -> %s\n", errText(err))
	_, err = ebpf.NewMap(&ebpf.MapSpec{Name: "bad", Type: ebpf.Hash, KeySize: 0, ValueSize: 8, MaxEntries: 8})
	fmt.Printf("NewMap key size 0 -> %s\n", errText(err))

	if os.Getenv("CLIENT_PAUSE") != "" && len(maps) > 0 {
		link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", maps[0].FD()))
		fmt.Fprintf(os.Stderr, "PAUSE %s\n", link)
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	for _, m := range maps {
		m.Close()
	}
	fmt.Println("done")
}

package metrics

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RegisterProcess adds the usual go_ and process_ metrics: goroutines,
// heap, resident memory, CPU time and start time, which an operator needs
// to tell a busy gateway from a leaking one.
func RegisterProcess(r *Registry) {
	if r == nil {
		return
	}
	start := float64(time.Now().Unix())
	r.GaugeFunc("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.", func() float64 { return start })
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 { return float64(runtime.NumGoroutine()) })
	r.GaugeFunc("go_memstats_heap_inuse_bytes", "Bytes in heap spans in use, as the Go runtime counts them.", readRuntime("/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"))
	r.GaugeFunc("go_memory_total_bytes", "All memory mapped by the Go runtime.", readRuntime("/memory/classes/total:bytes"))
	r.GaugeFunc("process_resident_memory_bytes", "Resident memory size in bytes (NaN where /proc is not available).", residentBytes)
	r.CounterFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpuSeconds)
}

// readRuntime sums runtime/metrics samples, all of them byte counts.
func readRuntime(names ...string) func() float64 {
	return func() float64 {
		samples := make([]metrics.Sample, len(names))
		for i, n := range names {
			samples[i].Name = n
		}
		metrics.Read(samples)
		var sum float64
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				sum += float64(s.Value.Uint64())
			}
		}
		return sum
	}
}

func residentBytes() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return nan
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return nan
	}
	pages, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return nan
	}
	return float64(pages) * float64(os.Getpagesize())
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nan
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

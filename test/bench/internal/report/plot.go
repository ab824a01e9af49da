package report

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var colors = map[string]color.Color{
	Cnishim:   color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	GoCNI:     color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	Floor:     color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff},
	Unbounded: color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// SetupLatencyPlot writes a PNG with one panel per cell: the distribution (CDF) of set-up
// latency of each implementation, pooled over rounds. Cells are laid out in rows of cols.
func SetupLatencyPlot(path string, runs []runner.Run, cells []runner.Cell, cols int) error {
	x := newIndex(runs)
	var panels []*plot.Plot
	for _, c := range cells {
		p := plot.New()
		p.Title.Text = c.String()
		p.X.Label.Text = "setup latency (ms)"
		p.Y.Label.Text = "fraction of pods"
		p.Y.Min, p.Y.Max = 0, 1
		p.Legend.Top = false
		p.Legend.Left = false
		for _, name := range []string{Floor, GoCNI, Cnishim} {
			lat := x.get(c, name).latencies(true)
			if len(lat) == 0 {
				continue
			}
			xys := make(plotter.XYs, 0, len(lat)+1)
			xys = append(xys, plotter.XY{X: lat[0], Y: 0})
			for i, v := range lat {
				xys = append(xys, plotter.XY{X: v, Y: float64(i+1) / float64(len(lat))})
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return err
			}
			l.Color = colors[name]
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(name, l)
		}
		p.Add(plotter.NewGrid())
		panels = append(panels, p)
	}
	return saveGrid(path, panels, cols, 5*vg.Inch)
}

// AdmissionPlot writes a PNG of the storms: the set-up throughput and the set-up p99 of
// cnishim at its default, unbounded and go-cni on every storm, and, for each storm where
// fixed ADD bounds were swept, the throughput of each bound beside those three.
func AdmissionPlot(path string, runs []runner.Run, storms []runner.Cell) error {
	x := newIndex(runs)
	rate, err := groupedBars(x, storms, "setup pods/s (median)", setupRate)
	if err != nil {
		return err
	}
	p99, err := groupedBars(x, storms, "setup p99 (ms, median)", setupPct(99))
	if err != nil {
		return err
	}
	panels := []*plot.Plot{rate, p99}
	for _, c := range storms {
		var sweep plotter.XYs
		for k := 1; k <= 64; k++ {
			if r := x.get(c, SweepName(k)).median(setupRate); !math.IsNaN(r) {
				sweep = append(sweep, plotter.XY{X: float64(k), Y: r})
			}
		}
		if len(sweep) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = "ADD bound sweep: " + c.String()
		p.X.Label.Text = "fixed ADD bound"
		p.Y.Label.Text = "setup pods/s (median)"
		p.Y.Min = 0
		p.Legend.Top = false
		p.Legend.Left = false
		p.Add(plotter.NewGrid())
		l, s, err := plotter.NewLinePoints(sweep)
		if err != nil {
			return err
		}
		p.Add(l, s)
		p.Legend.Add("fixed bound", l, s)
		lo, hi := sweep[0].X, sweep[len(sweep)-1].X
		for _, name := range []string{Cnishim, Unbounded, GoCNI} {
			r := x.get(c, name).median(setupRate)
			if math.IsNaN(r) {
				continue
			}
			h, err := plotter.NewLine(plotter.XYs{{X: lo, Y: r}, {X: hi, Y: r}})
			if err != nil {
				return err
			}
			h.Color = colors[name]
			h.Width = vg.Points(1.5)
			h.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			label := name
			if name == Cnishim {
				label = "cnishim (default)"
			}
			p.Add(h)
			p.Legend.Add(label, h)
		}
		panels = append(panels, p)
	}
	return saveGrid(path, panels, 2, 6*vg.Inch)
}

// groupedBars draws m's median for cnishim's default, unbounded and go-cni, one group of
// bars per storm.
func groupedBars(x *index, storms []runner.Cell, ylabel string, m metric) (*plot.Plot, error) {
	p := plot.New()
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	names := []string{Cnishim, Unbounded, GoCNI}
	w := vg.Points(14)
	top := 0.0
	for i, name := range names {
		vals := make(plotter.Values, len(storms))
		for j, c := range storms {
			if v := x.get(c, name).median(m); !math.IsNaN(v) {
				vals[j] = v
				top = max(top, v)
			}
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		b.Color = colors[name]
		b.LineStyle.Width = 0
		b.Offset = vg.Length(i-1) * w
		p.Add(b)
		label := name
		if name == Cnishim {
			label = "cnishim (default)"
		}
		p.Legend.Add(label, b)
	}
	labels := make([]string, len(storms))
	for j, c := range storms {
		labels[j] = c.Short()
	}
	p.NominalX(labels...)
	// Room for the legend above the bars, and for the outer bars at the sides.
	p.Y.Max = top * 1.3
	p.X.Min, p.X.Max = -0.7, float64(len(storms))-0.3
	return p, nil
}

func saveGrid(path string, panels []*plot.Plot, cols int, tile vg.Length) error {
	if len(panels) == 0 {
		return fmt.Errorf("plot %s: nothing measured", path)
	}
	cols = min(cols, len(panels))
	rows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, p := range panels {
		grid[i/cols][i%cols] = p
	}
	img := vgimg.New(vg.Length(cols)*tile, vg.Length(rows)*tile*0.75)
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, t, dc)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

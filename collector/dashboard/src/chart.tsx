// A uPlot chart (lines or bars over time) that follows its container's width.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  values: (number | null)[];
}

const COLORS = ["#0b5cad", "#b3470b", "#1f7a3a", "#7a2e9e", "#8a6d00", "#a3123f", "#00707a"];

export function Chart(props: {
  label: string;
  /** Bucket starts, epoch seconds. */
  x: number[];
  series: ChartSeries[];
  bars?: boolean;
  tz: string;
  yLabel: string;
  height?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const { label, x, series, bars, tz, yLabel, height = 220 } = props;
  // Callers build `series` afresh on every render: the chart is rebuilt only when what it shows
  // changes, not each time a panel beside it loads.
  const shown = JSON.stringify([x, series, bars ?? false, tz, yLabel, height]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(240, el.clientWidth),
      height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
      legend: { show: series.length > 1 },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { label: yLabel, size: 64 }],
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length] ?? "#0b5cad",
          width: 2,
          fill: bars ? (COLORS[i % COLORS.length] ?? "#0b5cad") + "99" : undefined,
          paths: bars ? uPlot.paths.bars?.({ size: [0.6, 64] }) : undefined,
          points: { show: x.length < 40 },
        })),
      ],
    };
    const plot = new uPlot(opts, [x, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => {
      plot.setSize({ width: Math.max(240, el.clientWidth), height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [shown]);
  return <div class="chart" role="img" aria-label={label} ref={box} />;
}

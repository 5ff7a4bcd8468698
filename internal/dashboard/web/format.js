// Number and time formatting, matching what the hal0 CLI prints
// (internal/config.FormatBytes and internal/progress.Duration), so the
// dashboard and a terminal show a pull the same way.

const units = 'KMGTP';

/** bytes formats n with a binary unit: "512 B", "4.0 MiB". */
export function bytes(n) {
  if (!Number.isFinite(n) || n < 0) return '?';
  if (n < 1024) return `${Math.round(n)} B`;
  let div = 1024;
  let exp = 0;
  for (let m = Math.floor(n / 1024); m >= 1024 && exp < 4; m = Math.floor(m / 1024)) {
    div *= 1024;
    exp++;
  }
  return `${(n / div).toFixed(1)} ${units[exp]}iB`;
}

/** rate formats bytes per second. */
export function rate(bps) {
  return `${bytes(bps || 0)}/s`;
}

/** duration formats seconds compactly: 45s, 3m05s, 1h02m; "--" when unknown. */
export function duration(s) {
  if (s === null || s === undefined || !Number.isFinite(s) || s < 0) return '--';
  const t = Math.round(s);
  const hh = Math.floor(t / 3600);
  const mm = Math.floor(t / 60) % 60;
  const ss = t % 60;
  const pad = (v) => String(v).padStart(2, '0');
  if (hh > 0) return `${hh}h${pad(mm)}m`;
  if (mm > 0) return `${mm}m${pad(ss)}s`;
  return `${ss}s`;
}

/** percent of done over total, 0–100, one decimal; null when the total is
 * not known yet. */
export function percent(done, total) {
  if (!(total > 0)) return null;
  return Math.min(100, Math.max(0, Math.floor((1000 * done) / total) / 10));
}

/** shortCommit keeps the first 12 hex digits, as git does in logs. */
export function shortCommit(c) {
  return c ? c.slice(0, 12) : '';
}

/** when formats an ISO time or epoch seconds in the reader's locale. */
export function when(t) {
  if (t === null || t === undefined || t === '' || t === 0) return '';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
}

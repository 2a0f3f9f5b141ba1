"""The live page served at ``/``: one self-contained HTML file (no external scripts or fonts, so
it works on a drone's network with no internet). It polls /live/snapshot and draws the frame and
its boxes on a canvas; a ``?token=`` in the page's URL is passed on to the snapshot request."""

LIVE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgekit live</title>
<style>
body{margin:0;background:#111;color:#eee;font:14px sans-serif}
#bar{padding:6px 10px;background:#222;display:flex;gap:18px;flex-wrap:wrap}
#bar b{color:#7cf}
canvas{display:block;margin:8px auto;background:#000;max-width:98vw}
</style></head>
<body>
<div id="bar"><span>state <b id="state">-</b></span><span>fps <b id="fps">-</b></span>
<span>latency <b id="lat">-</b> ms</span><span>dropped <b id="drop">-</b></span>
<span>model <b id="model">-</b></span><span>source <b id="src">-</b></span>
<span>frame <b id="idx">-</b></span><span>boxes <b id="n">-</b></span></div>
<canvas id="view" width="640" height="360"></canvas>
<script>
const token = new URLSearchParams(location.search).get("token");
const url = "/live/snapshot" + (token ? "?token=" + encodeURIComponent(token) : "");
const cv = document.getElementById("view"), ctx = cv.getContext("2d");
const img = new Image();
function set(id, v){ document.getElementById(id).textContent = v; }
function corners(b){ // xywhr -> 4 points
  const [x,y,w,h,r] = b, c = Math.cos(r), s = Math.sin(r), pts = [];
  for (const [dx,dy] of [[-w/2,-h/2],[w/2,-h/2],[w/2,h/2],[-w/2,h/2]])
    pts.push([x + dx*c - dy*s, y + dx*s + dy*c]);
  return pts;
}
function draw(p){
  if (cv.width !== img.naturalWidth){
    cv.width = img.naturalWidth; cv.height = img.naturalHeight;  // small frames shown at >= 640 px wide
    cv.style.width = Math.min(window.innerWidth * 0.96, Math.max(640, img.naturalWidth)) + "px";
  }
  ctx.drawImage(img, 0, 0);
  const d = p.detections; ctx.lineWidth = Math.max(2, cv.width/320); ctx.strokeStyle = "#00ff00";
  ctx.fillStyle = "#00ff00"; ctx.font = Math.max(12, cv.width/50) + "px sans-serif";
  d.boxes.forEach((b, i) => {
    const pts = d.format === "xywhr" ? corners(b) : [[b[0],b[1]],[b[2],b[1]],[b[2],b[3]],[b[0],b[3]]];
    ctx.beginPath(); ctx.moveTo(pts[0][0], pts[0][1]);
    for (const q of pts.slice(1)) ctx.lineTo(q[0], q[1]);
    ctx.closePath(); ctx.stroke();
    ctx.fillText(d.class_ids[i] + " " + d.scores[i].toFixed(2), pts[0][0], pts[0][1] - 3);
  });
  set("n", d.boxes.length);
}
async function tick(){
  try {
    const r = await fetch(url, {cache: "no-store"});
    const s = await r.json();
    set("state", s.state); set("fps", s.fps.toFixed(1));
    set("drop", Object.entries(s.dropped).map(([k,v]) => k + " " + v).join(" / "));
    set("model", (s.model.name || "-") + " (" + (s.model.backend || "") + " " + (s.model.precision || "") + ")");
    set("src", s.source.kind + " " + s.source.state);
    if (s.frame){
      const p = s.frame.payload; set("idx", p.frame); set("lat", p.timings.latency_ms.toFixed(1));
      img.onload = () => draw(p); img.src = "data:image/jpeg;base64," + s.frame.jpeg;
    }
  } catch (e) { set("state", "unreachable"); }
  setTimeout(tick, 150);
}
tick();
</script></body></html>
"""

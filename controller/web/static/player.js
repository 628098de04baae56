// Replays an asciicast recording with asciinema-player.
'use strict';
(() => {
  const el = document.getElementById('player');
  if (!el || !window.AsciinemaPlayer) return;
  window.myplatformPlayer = AsciinemaPlayer.create(el.dataset.src, el, { fit: 'width', idleTimeLimit: 2 });
})();

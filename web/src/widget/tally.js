// tally's embeddable widget: <tally-rating> and <tally-comments>.
// <script type="module" src="https://comments.example.com/widget/tally.js"></script>
//
// <tally-rating> is defined here at once. The thread's code (tally-comments.js, next to
// this file) is loaded only when a <tally-comments> element is on the page or added to
// it later; the element upgrades when its definition arrives.
import { TallyRating } from './rating.js';

if (!customElements.get('tally-rating')) customElements.define('tally-rating', TallyRating);

let loading = null;
function loadThread() {
  loading ||= import(new URL('./tally-comments.js', import.meta.url).href);
  return loading;
}

function watch() {
  if (customElements.get('tally-comments')) return;
  if (document.querySelector('tally-comments')) {
    loadThread();
    return;
  }
  const seen = new MutationObserver(() => {
    if (document.querySelector('tally-comments')) {
      seen.disconnect();
      loadThread();
    }
  });
  seen.observe(document.documentElement, { childList: true, subtree: true });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch, { once: true });
else watch();

export { TallyRating, loadThread };

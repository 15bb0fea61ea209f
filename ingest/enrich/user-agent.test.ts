import { describe, expect, it } from 'vitest';
import { createUaParser, type UaInfo } from './user-agent.ts';

type Row = [label: string, ua: string, expected: UaInfo];

function human(browser: string, browserVersion: string, os: string, osVersion: string, device: UaInfo['device']): UaInfo {
  return { browser, browserVersion, os, osVersion, device, bot: false };
}

function bot(browser = '', browserVersion = '', os = '', osVersion = ''): UaInfo {
  return { browser, browserVersion, os, osVersion, device: 'desktop', bot: true };
}

const rows: Row[] = [
  [
    'Chrome on Windows',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
    human('Chrome', '124', 'Windows', '10', 'desktop'),
  ],
  [
    'Safari on iPhone',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1',
    human('Safari', '17', 'iOS', '17.4', 'mobile'),
  ],
  [
    'Safari on iPad',
    'Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1',
    human('Safari', '16', 'iOS', '16.6', 'tablet'),
  ],
  [
    'Safari on macOS (also an iPad in desktop mode)',
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
    human('Safari', '17', 'macOS', '10.15', 'desktop'),
  ],
  [
    'Chrome on an Android phone',
    'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36',
    human('Chrome', '124', 'Android', '14', 'mobile'),
  ],
  [
    'Chrome on a reduced-UA Android phone',
    'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36',
    human('Chrome', '124', 'Android', '10', 'mobile'),
  ],
  [
    'Chrome on an Android tablet (Galaxy Tab S8)',
    'Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36',
    human('Chrome', '123', 'Android', '13', 'tablet'),
  ],
  [
    'Chrome WebView in an Android app',
    'Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36',
    human('Chrome', '124', 'Android', '13', 'mobile'),
  ],
  ['Firefox on Linux', 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0', human('Firefox', '125', 'Linux', '', 'desktop')],
  ['Firefox on Ubuntu', 'Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0', human('Firefox', '124', 'Linux', '', 'desktop')],
  ['Firefox on Android', 'Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0', human('Firefox', '125', 'Android', '14', 'mobile')],
  [
    'Edge on Windows',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51',
    human('Microsoft Edge', '124', 'Windows', '10', 'desktop'),
  ],
  [
    'Samsung Internet on a Galaxy phone',
    'Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36',
    human('Samsung Browser', '24', 'Android', '14', 'mobile'),
  ],
  [
    'Opera on Windows',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 OPR/109.0.0.0',
    human('Opera', '109', 'Windows', '10', 'desktop'),
  ],
  [
    'Chrome on iOS',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1',
    human('Chrome', '124', 'iOS', '17.4', 'mobile'),
  ],
  [
    'Firefox on Windows 7',
    'Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0',
    human('Firefox', '115', 'Windows', '7', 'desktop'),
  ],
  [
    'Chrome on Windows 8.1',
    'Mozilla/5.0 (Windows NT 6.3; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36',
    human('Chrome', '109', 'Windows', '8.1', 'desktop'),
  ],
  [
    'Chrome on ChromeOS',
    'Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
    human('Chrome', '124', 'Chrome OS', '14541.0', 'desktop'),
  ],
  [
    'Internet Explorer 11',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; rv:11.0) like Gecko',
    human('Internet Explorer', '11', 'Windows', '10', 'desktop'),
  ],
  [
    'Silk on a Kindle Fire tablet',
    'Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/124.3.1 like Chrome/124.0.6367.82 Safari/537.36',
    human('Silk', '124', 'Android', '11', 'tablet'),
  ],
  [
    'Samsung Internet on a smart TV',
    'Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36',
    human('Samsung Browser', '4', 'Tizen', '6.0', 'desktop'),
  ],
  [
    'Chrome on a Galaxy Watch',
    'Mozilla/5.0 (Linux; Android 13; SM-R910) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/110.0.0.0 Mobile Safari/537.36',
    human('Chrome', '110', 'Android', '13', 'mobile'),
  ],
  [
    'Yandex Browser',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 YaBrowser/24.4.0.0 Safari/537.36',
    human('Yandex Browser', '24', 'Windows', '10', 'desktop'),
  ],
  [
    'Facebook in-app browser',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/458.0.0.34.108;FBBV/587063470;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.4;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]',
    human('Facebook', '458', 'iOS', '17.4', 'mobile'),
  ],
  ['Googlebot', 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)', bot()],
  [
    'Googlebot smartphone-style',
    'Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/124.0.6367.118 Safari/537.36',
    bot('Chrome', '124'),
  ],
  ['bingbot', 'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)', bot()],
  ['GPTBot', 'Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)', bot()],
  ['curl', 'curl/8.5.0', bot()],
  ['python-requests', 'python-requests/2.31.0', bot()],
  ['Go HTTP client', 'Go-http-client/1.1', bot()],
  [
    'HeadlessChrome',
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36',
    bot('Chrome', '124', 'Linux'),
  ],
  [
    'PhantomJS',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/537.36',
    bot('PhantomJS', '2', 'Windows', '10'),
  ],
  ['empty', '', bot()],
  ['blank', '   ', bot()],
];

describe('createUaParser', () => {
  const parse = createUaParser({ cacheSize: 100 });

  it.each(rows)('%s', (_label, ua, expected) => {
    expect({ ...parse(ua) }).toEqual(expected);
  });

  it('answers a repeated UA from the cache with the same frozen object', () => {
    const ua = rows[0]![1];
    const first = parse(ua);
    expect(parse(ua)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
  });

  it('keeps at most cacheSize entries and keeps the ones in use', () => {
    const small = createUaParser({ cacheSize: 4 });
    const uas = rows.slice(0, 5).map((r) => r[1]);
    const [a, b, c, d, e] = uas as [string, string, string, string, string];
    const first = small(a);
    small(b); // a and b fill a generation and age
    small(c);
    expect(small(a)).toBe(first); // used again: promoted with c
    small(d); // b, unused for two turns, is gone; a is kept
    expect(small.size).toBeLessThanOrEqual(4);
    expect(small(a)).toBe(first);
    const bAgain = small(b); // a miss: parsed again
    expect(bAgain).not.toBe(undefined);
    expect(small(b)).toBe(bAgain);
    for (let i = 0; i < 50; i++) small(`${e} n${i}`);
    expect(small.size).toBeLessThanOrEqual(4);
  });

  it('cuts very long UAs to the length the parser reads, so keys stay bounded', () => {
    const small = createUaParser({ cacheSize: 2 });
    const long = rows[0]![1] + 'x'.repeat(100_000);
    expect(small(long).browser).toBe('Chrome');
    expect(small(long + 'y')).toBe(small(long));
    expect(small.size).toBe(1);
  });
});

import { describe, expect, it } from 'vitest';
import { channels, type Channel } from '../../schemas/enriched-event.ts';
import { classifyChannel, lookupHost, type ChannelInput } from './channel.ts';

function visit(over: Partial<ChannelInput>): ChannelInput {
  return { referrerHost: '', sameSite: false, utmSource: '', utmMedium: '', utmCampaign: '', clickIds: [], ...over };
}

type Row = [label: string, input: ChannelInput, channel: Channel, source: string];

const rows: Row[] = [
  // Direct
  ['no referrer, no tags', visit({}), 'Direct', ''],
  ['same-site referrer', visit({ referrerHost: 'example.com', sameSite: true }), 'Direct', ''],
  ['utm_source (direct), medium (none)', visit({ utmSource: '(direct)', utmMedium: '(none)' }), 'Direct', ''],
  // Organic search
  ['google.com', visit({ referrerHost: 'www.google.com' }), 'Organic Search', 'Google'],
  ['google ccTLD', visit({ referrerHost: 'www.google.co.uk' }), 'Organic Search', 'Google'],
  ['google.com.br', visit({ referrerHost: 'google.com.br' }), 'Organic Search', 'Google'],
  ['Google app on Android', visit({ referrerHost: 'com.google.android.googlequicksearchbox' }), 'Organic Search', 'Google'],
  ['bing', visit({ referrerHost: 'www.bing.com' }), 'Organic Search', 'Bing'],
  ['duckduckgo', visit({ referrerHost: 'duckduckgo.com' }), 'Organic Search', 'DuckDuckGo'],
  ['yahoo country search', visit({ referrerHost: 'uk.search.yahoo.com' }), 'Organic Search', 'Yahoo!'],
  ['yandex.ru', visit({ referrerHost: 'yandex.ru' }), 'Organic Search', 'Yandex'],
  ['utm_medium organic, unknown source', visit({ utmSource: 'mysearch', utmMedium: 'organic' }), 'Organic Search', 'mysearch'],
  // Paid search
  ['google cpc', visit({ utmSource: 'google', utmMedium: 'cpc' }), 'Paid Search', 'Google'],
  ['bing ppc', visit({ utmSource: 'bing', utmMedium: 'ppc' }), 'Paid Search', 'Bing'],
  ['gclid, no referrer', visit({ clickIds: ['gclid'] }), 'Paid Search', 'Google'],
  ['gclid from google.com', visit({ referrerHost: 'www.google.com', clickIds: ['gclid'] }), 'Paid Search', 'Google'],
  ['gclid via a search partner', visit({ referrerHost: 'partner-search.example', clickIds: ['gclid'] }), 'Paid Search', 'Google'],
  ['wbraid (iOS)', visit({ clickIds: ['wbraid'] }), 'Paid Search', 'Google'],
  ['msclkid', visit({ referrerHost: 'www.bing.com', clickIds: ['msclkid'] }), 'Paid Search', 'Bing'],
  // Social
  ['facebook mobile', visit({ referrerHost: 'm.facebook.com' }), 'Organic Social', 'Facebook'],
  ['facebook link shim', visit({ referrerHost: 'l.facebook.com' }), 'Organic Social', 'Facebook'],
  ['facebook lite link shim', visit({ referrerHost: 'lm.facebook.com' }), 'Organic Social', 'Facebook'],
  ['fbclid without referrer', visit({ clickIds: ['fbclid'] }), 'Organic Social', 'Facebook'],
  ['t.co', visit({ referrerHost: 't.co' }), 'Organic Social', 'Twitter'],
  ['x.com', visit({ referrerHost: 'x.com' }), 'Organic Social', 'Twitter'],
  ['linkedin', visit({ referrerHost: 'www.linkedin.com' }), 'Organic Social', 'LinkedIn'],
  ['reddit outbound', visit({ referrerHost: 'out.reddit.com' }), 'Organic Social', 'Reddit'],
  ['hacker news', visit({ referrerHost: 'news.ycombinator.com' }), 'Organic Social', 'Hacker News'],
  ['pinterest ccTLD', visit({ referrerHost: 'pinterest.de' }), 'Organic Social', 'Pinterest'],
  ['utm_source fb alias', visit({ utmSource: 'fb' }), 'Organic Social', 'Facebook'],
  ['utm_source ig + social medium', visit({ utmSource: 'ig', utmMedium: 'social' }), 'Organic Social', 'Instagram'],
  ['social medium, unknown source', visit({ utmSource: 'mastodon.example', utmMedium: 'social-network' }), 'Organic Social', 'mastodon.example'],
  ['facebook paid_social', visit({ utmSource: 'facebook', utmMedium: 'paid_social' }), 'Paid Social', 'Facebook'],
  ['linkedin cpc', visit({ utmSource: 'linkedin', utmMedium: 'cpc' }), 'Paid Social', 'LinkedIn'],
  ['ttclid', visit({ clickIds: ['ttclid'] }), 'Paid Social', 'TikTok'],
  // Video
  ['youtube', visit({ referrerHost: 'm.youtube.com' }), 'Organic Video', 'YouTube'],
  ['youtu.be', visit({ referrerHost: 'youtu.be' }), 'Organic Video', 'YouTube'],
  ['youtube cpv', visit({ utmSource: 'youtube', utmMedium: 'cpv' }), 'Paid Video', 'YouTube'],
  ['video medium', visit({ utmSource: 'partner', utmMedium: 'video' }), 'Organic Video', 'partner'],
  // Shopping
  ['amazon referral', visit({ referrerHost: 'www.amazon.de' }), 'Organic Shopping', 'Amazon'],
  ['shopping campaign', visit({ utmSource: 'newsletter', utmCampaign: 'summer-shop' }), 'Organic Shopping', 'newsletter'],
  ['shopping campaign, paid', visit({ utmSource: 'google', utmMedium: 'cpc', utmCampaign: 'Shopping - Brand' }), 'Paid Shopping', 'Google'],
  ['workshop is not shopping', visit({ utmSource: 'partner', utmMedium: 'cpc', utmCampaign: 'workshop' }), 'Paid Other', 'partner'],
  // Display and other paid
  ['display medium', visit({ utmSource: 'adnetwork', utmMedium: 'display' }), 'Display', 'adnetwork'],
  ['cpm medium', visit({ utmSource: 'adnetwork', utmMedium: 'cpm' }), 'Display', 'adnetwork'],
  ['dclid (Campaign Manager)', visit({ clickIds: ['dclid'] }), 'Display', 'Google'],
  ['paid medium, unknown source', visit({ utmSource: 'newsletter-sponsor', utmMedium: 'paid' }), 'Paid Other', 'newsletter-sponsor'],
  ['cross-network campaign', visit({ utmSource: 'google', utmMedium: 'cpc', utmCampaign: 'pmax-cross-network' }), 'Cross-network', 'Google'],
  // AI assistants
  ['chatgpt referrer', visit({ referrerHost: 'chatgpt.com' }), 'AI Assistants', 'ChatGPT'],
  ['old chatgpt host', visit({ referrerHost: 'chat.openai.com' }), 'AI Assistants', 'ChatGPT'],
  ['chatgpt utm_source', visit({ utmSource: 'chatgpt.com' }), 'AI Assistants', 'ChatGPT'],
  ['perplexity', visit({ referrerHost: 'www.perplexity.ai' }), 'AI Assistants', 'Perplexity'],
  ['claude', visit({ referrerHost: 'claude.ai' }), 'AI Assistants', 'Claude'],
  ['gemini is not google search', visit({ referrerHost: 'gemini.google.com' }), 'AI Assistants', 'Gemini'],
  ['copilot', visit({ referrerHost: 'copilot.microsoft.com' }), 'AI Assistants', 'Copilot'],
  // Referral
  ['unknown site', visit({ referrerHost: 'www.some-blog.net' }), 'Referral', 'some-blog.net'],
  ['google docs is a referral', visit({ referrerHost: 'docs.google.com' }), 'Referral', 'docs.google.com'],
  ['?ref= from the referring site', visit({ referrerHost: 'producthunt.com', utmSource: 'producthunt' }), 'Referral', 'producthunt'],
  ['utm_medium referral', visit({ utmSource: 'partner', utmMedium: 'referral' }), 'Referral', 'partner'],
  ['utm_medium app', visit({ utmSource: 'ourapp', utmMedium: 'app' }), 'Referral', 'ourapp'],
  // Email and the rest
  ['email medium', visit({ utmSource: 'newsletter', utmMedium: 'email' }), 'Email', 'newsletter'],
  ['e-mail source', visit({ utmSource: 'e-mail' }), 'Email', 'e-mail'],
  ['gmail web', visit({ referrerHost: 'mail.google.com' }), 'Email', 'Gmail'],
  ['gmail android app', visit({ referrerHost: 'com.google.android.gm' }), 'Email', 'Gmail'],
  ['affiliate', visit({ utmSource: 'awin', utmMedium: 'affiliate' }), 'Affiliates', 'awin'],
  ['audio', visit({ utmSource: 'spotify', utmMedium: 'audio' }), 'Audio', 'spotify'],
  ['sms', visit({ utmSource: 'sms' }), 'SMS', 'sms'],
  ['push medium', visit({ utmSource: 'onesignal', utmMedium: 'web-push' }), 'Mobile Push Notifications', 'onesignal'],
  ['firebase', visit({ utmSource: 'firebase' }), 'Mobile Push Notifications', 'firebase'],
  ['tagged, unknown source, no medium', visit({ utmSource: 'Newsletter' }), 'Unassigned', 'Newsletter'],
  ['medium only, unrecognised', visit({ utmMedium: 'qr' }), 'Unassigned', ''],
  // Case and whitespace
  ['mixed-case tags', visit({ utmSource: ' Google ', utmMedium: 'CPC' }), 'Paid Search', 'Google'],
  ['same site but tagged', visit({ referrerHost: 'example.com', sameSite: true, utmSource: 'newsletter', utmMedium: 'email' }), 'Email', 'newsletter'],
  // Names of Object.prototype's members are plain tags (the fuzz suite found `__proto__` threw)
  ['utm_source __proto__', visit({ utmSource: '__proto__' }), 'Unassigned', '__proto__'],
  ['utm_source constructor', visit({ utmSource: 'constructor', utmMedium: 'cpc' }), 'Paid Other', 'constructor'],
  ['utm_source toString', visit({ utmSource: 'toString' }), 'Unassigned', 'toString'],
];

describe('classifyChannel', () => {
  it.each(rows)('%s', (_label, input, channel, source) => {
    expect(classifyChannel(input)).toEqual({ channel, source });
  });

  it('only answers channel names from the schema', () => {
    for (const [, input] of rows) expect(channels).toContain(classifyChannel(input).channel);
  });

  it('caps a long utm_source', () => {
    expect(classifyChannel(visit({ utmSource: 'x'.repeat(2000) })).source.length).toBe(500);
  });
});

describe('lookupHost', () => {
  it.each([
    ['lm.facebook.com', 'Facebook'],
    ['old.reddit.com', 'Reddit'],
    ['google.de', 'Google'],
    ['notgoogle.com', null],
    ['google.com.evil.example', null],
    ['facebook.com.evil.example', null],
    ['evilfacebook.com', null],
  ])('%s → %j', (host, name) => {
    expect(lookupHost(host)?.name ?? null).toBe(name);
  });
});

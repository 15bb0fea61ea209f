/*! Farol tracker, MIT. See ingest/tracker/README.md */
!function(w,d){'use strict';
function hash(s){for(var h=2166136261,i=0;i<s.length;i++)h=Math.imul(h^s.charCodeAt(i),16777619);return h>>>0}
function wt(v){var n=+v.weight;return n>0?n:0}
function pick(x,id){var vs=x.variations||[],t=0,i,b;vs.forEach(v=>t+=wt(v));b=hash(x.id+':'+id)/4294967296*(t||vs.length);
for(i=0;i<vs.length;i++)if((b-=t?wt(vs[i]):1)<0)return vs[i];return vs[vs.length-1]}
function glob(g){return new RegExp('^'+g.replace(/[.+?^${}()|[\]\\]/g,'\\$&').replace(/\*\*|\*/g,m=>m=='*'?'[^/]*':'.*')+'$')}
function onPage(x,p){var g=x.pages;return!g||!g.length||g.some(s=>glob(s).test(p))}
if(!d){w.farolTest={hash:hash,pick:pick,glob:glob,onPage:onPage};return}

var L=location,N=navigator,s=d.currentScript||d.querySelector('script[data-domain]'),
has=k=>s.hasAttribute(k),dom=s.getAttribute('data-domain')||L.hostname,
org=new URL(s.src||L.href,L.href).origin,api=s.getAttribute('data-api')||org+'/api/event',
XP=has('data-experiments')&&s.getAttribute('data-domain'),Q=w.farol&&w.farol.q||[],
ref=d.referrer||null,exp={},cfg,chg=[],last,ready,G,mo,until,vid,on=(t,e,f)=>t.addEventListener(e,f);
w.farol=function(){Q.push(arguments)};

function store(k,v){try{var S=sessionStorage,o=S[k];v?S[k]=v:S.removeItem(k);return o}catch(e){}}
function off(){try{if(localStorage.farol_ignore=='true')return 1}catch(e){}
return(N.webdriver||w._phantom||w.__nightmare||w.Cypress)&&!has('data-allow-automation')}

function send(n,o){o=o||{};var cb=o.callback,b,j,k;
if(off()){cb&&cb({status:0});return}
b={n:n,u:o.u||L.href,d:dom,r:ref,w:w.innerWidth};
if(o.props)b.p=o.props;if(o.revenue)b.$=o.revenue;if(o.interactive===false)b.i=false;
for(k in exp){b.exp=exp;break}
j=JSON.stringify(b);
if(w.fetch)fetch(api,{method:'POST',headers:{'Content-Type':'text/plain'},body:j,keepalive:true}).then(r=>cb&&cb({status:r.status}),e=>cb&&cb({error:e}));
else{N.sendBeacon&&N.sendBeacon(api,j);cb&&cb({})}}

function id(){if(!vid){var m=/(?:^|; )farol_exp=([\w-]+)/.exec(d.cookie),a;
if(m)vid=m[1];else{a=new Uint32Array(2);crypto.getRandomValues(a);vid=a[0].toString(36)+a[1].toString(36);
d.cookie='farol_exp='+vid+';path=/;max-age=31536000;SameSite=Lax'+(L.protocol=='https:'?';Secure':'')}}return vid}

var EL=/^(a|b|body|br|button|div|em|h[1-6]|hr|i|img|label|li|ol|p|section|small|span|strong|t(able|body|head|[dhr])|u|ul)$/;
function ok(n,v){return/^(alt|class|rel|target|title|aria-[a-z]+)$/.test(n)||/^(href|src)$/.test(n)&&/^https?:$/.test(new URL(v,L.href).protocol)}
function frag(v){var b=new DOMParser().parseFromString(v,'text/html').body;
b.querySelectorAll('*').forEach(e=>EL.test(e.localName)?[...e.attributes].forEach(a=>ok(a.name,a.value)||e.removeAttribute(a.name)):e.remove());return b.childNodes}
function css(t){var e=d.createElement('style');e.textContent=t;(d.head||d.documentElement).appendChild(e);return e}
function show(){G&&G.remove();G=0}
function apply(){chg.forEach(c=>{var t=c.type,v=c.value;
if(t=='css'){c.el||(c.el=css(v));return}
try{d.querySelectorAll(c.selector).forEach(e=>{if(!EL.test(e.localName))return;
if(t=='text')e.textContent!==v&&(e.textContent=v);
else if(t=='html'){c.s=c.s||new WeakSet;c.s.has(e)||(e.replaceChildren(...frag(v)),c.s.add(e))}
else if(t=='attribute')e.getAttribute(c.name)!==v&&ok(c.name,v)&&e.setAttribute(c.name,v)})}catch(x){}})}
function watch(ms){until=Date.now()+ms;mo||(mo=new MutationObserver(()=>Date.now()>until?(mo.disconnect(),mo=0):apply()),
mo.observe(d.documentElement,{childList:true,subtree:true}))}

function assign(carry){var old=chg,u;exp={};chg=[];
try{(cfg||[]).forEach(x=>{var v=x.id&&onPage(x,L.pathname)&&pick(x,id());if(v&&v.key){exp[x.id]=v.key;chg=chg.concat((v.changes||[]).filter(c=>c&&c.type))}})}catch(e){exp={};chg=[]}
Object.assign(exp,carry);
old.forEach(c=>{if(c.el&&chg.indexOf(c)<0){c.el.remove();c.el=0}});
return chg.some(c=>{if(c.type!='redirect')return;try{u=new URL(c.url,L.href)}catch(e){return}if(!/^https?:$/.test(u.protocol))return;u.search||(u.search=L.search);u.hash||(u.hash=L.hash);
if(u.href.split('#')[0]==L.href.split('#')[0])return;u.origin==L.origin&&store('farol_rx',JSON.stringify({e:exp,r:ref,t:Date.now()}));L.replace(u.href);return 1})}

function page(nav,carry){var p=L.pathname;
if(d.visibilityState=='prerender'){on(d,'visibilitychange',()=>page(1,carry));return}
if(nav&&p===last)return;last=p;
if(XP){if(assign(carry))return 1;apply();nav&&watch(1000)}
send('pageview')}

function click(e){var a=e.target.closest&&e.target.closest('a[href]'),u;
if(!a||e.type=='auxclick'&&e.button!=1)return;
try{u=new URL(a.href,L.href)}catch(x){return}
if(!/^https?:$/.test(u.protocol))return;
if(/\.(pdf|xlsx?|docx?|txt|rtf|csv|exe|key|pp[st]x?|7z|pkg|rar|gz|zip|avi|mov|mp4|mpe?g|wmv|midi?|mp3|wav|wma|dmg)$/i.test(u.pathname))send('File Download',{props:{url:u.origin+u.pathname}});
else if(u.host!=L.host)send('Outbound Link: Click',{props:{url:u.href}})}

function start(c){if(ready)return;ready=1;var carry,H=history;
if(XP){cfg=c&&Array.isArray(c.experiments)&&c.experiments;try{carry=JSON.parse(store('farol_rx'))}catch(e){}
if(carry&&Date.now()-carry.t<3e4){ref=carry.r;carry=carry.e}else carry=0}
if(page(0,carry))return;
var done=()=>{apply();show();watch(1000)};
if(cfg){d.readyState=='loading'?(watch(1e4),on(d,'DOMContentLoaded',done)):done()}else show();
['pushState','replaceState'].forEach(k=>{var f=H[k];H[k]=function(){var r=f.apply(this,arguments);page(1);return r}});
on(w,'popstate',()=>page(1));on(d,'click',click);on(d,'auxclick',click);
w.farol=send;Q.forEach(a=>send.apply(0,a))}

if(XP){G=css('html{opacity:0!important}');
setTimeout(()=>{start();show()},1000);
fetch(org+'/api/config/'+encodeURIComponent(dom.split(',')[0])).then(r=>r.json()).then(start,()=>start())}
else start()
}(window,window.document);

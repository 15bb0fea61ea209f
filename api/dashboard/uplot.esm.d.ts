// Types for `./uplot.esm.js`, which the dashboard route serves from the uplot package's dist/.
import uPlot from 'uplot';
export default uPlot;

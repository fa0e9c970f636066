package org.obsstack.esstandin;

import static org.elasticsearch.plugins.AnalysisPlugin.requiresAnalysisSettings;

import java.util.Map;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

/**
 * The analysis components that the settings of the .security index (and of
 * .security-profile) name and that Maven's integ-test-zip of Elasticsearch 8.19.4 lacks,
 * since it ships without the analysis-common module: its "email" analyzer is the
 * uax_url_email tokenizer, a pattern_capture filter, lowercase and unique
 * (SecuritySystemIndices#getMainIndexSettings). The server already has a pre-configured
 * "lowercase" filter, so it is not registered here. Names and settings are those of
 * analysis-common's CommonAnalysisPlugin, so that an index created here is read the same
 * way by a full distribution.
 */
public class ObsStandinAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        // pattern_capture has no meaning without its patterns: like upstream, it may only
        // be used through index settings, never by name alone.
        return Map.of(
            "pattern_capture", requiresAnalysisSettings(PatternCaptureGroupTokenFilterFactory::new),
            "unique", UniqueTokenFilterFactory::new
        );
    }

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email", UAX29URLEmailTokenizerFactory::new);
    }
}
